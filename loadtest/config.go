package main

import (
	"flag"
	"time"
)

// config is the command line: what to run, how big, and where the report
// goes.
type config struct {
	fleetMode bool // run as a load-generator process of a distributed run
	fleetFrom int  // that process's first connection index
	binDir    string
	pods      int
	procs     int

	conns    int
	targets  string
	msgs     int
	rate     float64
	rooms    int
	settle   time.Duration
	conc     int
	outDir   string
	deadline time.Duration
	repeat   int
	storm    bool

	// With -url: the external server and how to talk to it.
	extURL   string
	hello    string
	pubTmpl  string
	pubURL   string
	ackMatch string
	extPID   int

	sourceIPs string // -source-ips, as given (passed on to load processes)

	chaos chaosConfig // -chaos and its flags
}

// parseFlags reads the command line into a config.
func parseFlags() *config {
	c := &config{}
	flag.BoolVar(&c.fleetMode, "fleet", false, "(internal) run as a load-generator process of a distributed run")
	flag.IntVar(&c.fleetFrom, "fleet-first", 0, "(internal) index of this process's first connection")
	flag.StringVar(&c.binDir, "bin-dir", "", "where the realtime and baseline server binaries are (default: beside this executable; make loadtest builds them there)")
	flag.IntVar(&c.pods, "pods", 1, "server processes sharing one port (SO_REUSEPORT) behind a Redis the load test starts; >1 runs our server only")
	flag.IntVar(&c.procs, "procs", 0, "load-generator processes (default: one per 19,500 connections)")

	flag.IntVar(&c.conns, "conns", 10000, "connections per target (one process holds at most ~19,900)")
	flag.StringVar(&c.targets, "targets", "realtime-http,realtime-raw,baseline", "comma-separated: realtime-http, realtime-raw, baseline")
	flag.IntVar(&c.msgs, "msgs", 100, "fan-out messages published to the room")
	flag.Float64Var(&c.rate, "rate", 10, "fan-out messages per second; 0: as fast as deliveries keep up (each message once 99% of the previous one arrived)")
	flag.IntVar(&c.rooms, "rooms", 1, "layout: 1 is one big room; N spreads connections over N rooms and publishes to each in turn")
	flag.DurationVar(&c.settle, "settle", 3*time.Second, "idle time before memory is read")
	flag.IntVar(&c.conc, "dial-concurrency", 64, "connections opened at once while ramping")
	flag.StringVar(&c.outDir, "out", "out/loadtest", "directory for the JSON report and server logs")
	flag.DurationVar(&c.deadline, "timeout", 30*time.Minute, "the whole run stops after this")
	flag.IntVar(&c.repeat, "repeat", 1, "runs per target (interleaved across targets); figures are medians")
	flag.BoolVar(&c.storm, "storm", false, "after the idle measurement, drop every connection at once and bring each back as realtime.js does (backoff with jitter, Retry-After); reports time until all are back, connect rate, peak RSS, and the ramp")
	flag.StringVar(&c.extURL, "url", "", "drive this WebSocket server instead of starting ours (e.g. ws://host:port/path)")
	flag.StringVar(&c.hello, "hello", `{"type":"join","room":"{room}"}`, "with -url: the frame each connection sends first; {room} is replaced")
	flag.StringVar(&c.pubTmpl, "publish", `{"type":"chat","room":"{room}","data":{"t":{t}}}`, "with -url: a published message; {room} and {t} (send time, ns) are replaced; receivers find \"t\":<ns> in what they get")
	flag.StringVar(&c.pubURL, "publish-url", "", "with -url: POST published messages here instead of sending them on connection 0")
	flag.StringVar(&c.ackMatch, "ack", "", "with -url: a substring of the server's answer to the hello frame; empty: do not wait for one")
	flag.StringVar(&c.sourceIPs, "source-ips", "", "spread connections over these source addresses of this host: comma-separated, each an address or an IPv4 range first-last (default: 127.0.0.1-127.0.0.250 for a loopback target, the kernel's choice for any other)")
	flag.IntVar(&c.extPID, "server-pid", 0, "with -url: the server's PID on this machine, to read its RSS and CPU")
	c.chaos.register()
	flag.Parse()
	return c
}
