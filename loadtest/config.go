package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
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

	conns       int
	targets     string
	msgs        int
	rate        float64
	rooms       int
	settle      time.Duration
	conc        int
	outDir      string
	deadline    time.Duration
	repeat      int
	storm       bool
	stormMissed int

	// With -url: the external server and how to talk to it.
	extURL   string
	hello    string
	pubTmpl  string
	pubURL   string
	ackMatch string
	extPID   int
	pubHdr   []string // -publish-header, each "Name: value"

	publisherReceives bool          // a server delivers a message to its sender too
	thresholds        thresholds    // -max-lost, -max-p99, -min-rate
	deliveryWait      time.Duration // after the last message, how long deliveries may take

	sourceIPs string // -source-ips, as given (passed on to load processes)
	client    string // -client: the load generator's WebSocket client, lean or gorilla (passed on too)

	chaos chaosConfig // -chaos and its flags

	command string // the command line, quoted for a shell, for the reports
}

// internalFlags are the flags the load test passes to the processes it
// starts itself; -h does not show them.
var internalFlags = map[string]bool{"fleet": true, "fleet-first": true}

// parseFlags reads the command line (args, without the program's name) into
// a config. -h prints the usage, without the internal flags, on out and
// returns flag.ErrHelp; any other error is printed on out too.
func parseFlags(prog string, args []string, out io.Writer) (*config, error) {
	c := &config{command: shellJoin(append([]string{prog}, redactHeaders(args)...))}
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(fs, prog, out) }
	fs.BoolVar(&c.fleetMode, "fleet", false, "run as a load-generator process of a distributed run")
	fs.IntVar(&c.fleetFrom, "fleet-first", 0, "index of this process's first connection")
	fs.StringVar(&c.binDir, "bin-dir", "", "where the realtime and baseline server binaries are (default: beside this executable; make loadtest builds them there)")
	fs.IntVar(&c.pods, "pods", 1, "server processes sharing one port (SO_REUSEPORT) behind a Redis the load test starts; >1 runs our server only")
	fs.IntVar(&c.procs, "procs", 0, "load-generator processes (default: one per 19,500 connections)")

	fs.IntVar(&c.conns, "conns", 10000, "connections per target (one process holds at most ~19,900)")
	fs.StringVar(&c.targets, "targets", "realtime-http,realtime-raw,baseline", "comma-separated: realtime-http, realtime-raw, baseline")
	fs.IntVar(&c.msgs, "msgs", 100, "fan-out messages published to the room")
	fs.Float64Var(&c.rate, "rate", 10, "fan-out messages per second; 0: as fast as deliveries keep up (each message once 99% of the previous one arrived)")
	fs.IntVar(&c.rooms, "rooms", 1, "layout: 1 is one big room; N spreads connections over N rooms and publishes to each in turn")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "idle time before memory is read")
	fs.IntVar(&c.conc, "dial-concurrency", 64, "connections opened at once while ramping")
	fs.StringVar(&c.outDir, "out", "out/loadtest", "directory for the JSON report and server logs")
	fs.DurationVar(&c.deadline, "timeout", 30*time.Minute, "the whole run stops after this")
	fs.IntVar(&c.repeat, "repeat", 1, "runs per target (interleaved across targets); figures are medians")
	fs.BoolVar(&c.storm, "storm", false, "after the idle measurement, drop every connection at once and bring each back as realtime.js does (backoff with jitter, Retry-After); reports time until all are back, connect rate, peak RSS, and the ramp")
	fs.IntVar(&c.stormMissed, "storm-missed", 0, "with -storm (our server): publish N messages to each room while every connection is away; each comes back, rejoins with since, and must get exactly those, in order (reports recovered, wrong, time until all are current)")
	fs.StringVar(&c.extURL, "url", "", "drive this WebSocket server instead of starting ours (e.g. ws://host:port/path)")
	fs.StringVar(&c.hello, "hello", `{"type":"join","room":"{room}"}`, "with -url: the frame each connection sends first; {room} is replaced")
	fs.StringVar(&c.pubTmpl, "publish", `{"type":"chat","room":"{room}","data":{"t":{t}}}`, "with -url: a published message; {room} and {t} (send time, ns) are replaced; receivers find \"t\":<ns> in what they get")
	fs.StringVar(&c.pubURL, "publish-url", "", "with -url: POST published messages here instead of sending each on a connection in its room")
	fs.Func("publish-header", "with -publish-url: a header of each POST, 'Name: value' (repeatable), e.g. 'Authorization: apikey KEY' (the reports' command line keeps its name only)", func(v string) error {
		if name, _, ok := strings.Cut(v, ":"); !ok || strings.TrimSpace(name) == "" {
			return fmt.Errorf("want 'Name: value'")
		}
		c.pubHdr = append(c.pubHdr, v)
		return nil
	})
	fs.BoolVar(&c.publisherReceives, "publisher-receives", true, "a message sent on a connection comes back to that connection too (false for a server that does not echo to the sender; then the publishers expect none of their own messages)")
	fs.DurationVar(&c.deliveryWait, "delivery-wait", time.Minute, "after the last message, wait at most this long for the deliveries still expected (what has not come then is lost)")
	fs.StringVar(&c.ackMatch, "ack", "", "with -url: a substring of the server's answer to the hello frame; empty: do not wait for one")
	fs.IntVar(&c.extPID, "server-pid", 0, "with -url: the server's PID on this machine, to read its RSS and CPU")
	fs.StringVar(&c.client, "client", clientLean, "the load generator's WebSocket client: lean (minimal RFC 6455 client, ws:// only: no net/http, no bufio, no allocation per message read) or gorilla (gorilla/websocket's, the client of figures measured before lean; -chaos always uses it)")
	fs.StringVar(&c.sourceIPs, "source-ips", "", "spread connections over these source addresses of this host: comma-separated, each an address or an IPv4 range first-last (default: 127.0.0.1-127.0.0.250 for a loopback target, the kernel's choice for any other)")
	fs.Int64Var(&c.thresholds.maxLost, "max-lost", -1, "threshold: exit 1 when a target lost more than N messages (summed over -repeat runs); -1: none")
	fs.DurationVar(&c.thresholds.maxP99, "max-p99", 0, "threshold: exit 1 when a target's fan-out latency p99 is above this (e.g. 50ms); 0: none")
	fs.Float64Var(&c.thresholds.minRate, "min-rate", 0, "threshold: exit 1 when a target delivered fewer messages per second than this over its fan-out; 0: none")
	c.chaos.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.check(fs); err != nil {
		fmt.Fprintln(out, "loadtest:", err)
		return nil, err
	}
	return c, nil
}

// check rejects command lines the run cannot work with.
func (c *config) check(fs *flag.FlagSet) error {
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	case c.conns < 1 || c.msgs < 0 || c.rooms < 1:
		return fmt.Errorf("-conns and -rooms must be at least 1, -msgs at least 0")
	case c.client != clientLean && c.client != clientGorilla:
		return fmt.Errorf("-client %q: lean or gorilla", c.client)
	case c.rooms > c.conns && !c.chaos.on:
		return fmt.Errorf("-rooms %d with -conns %d: every room needs a connection (its publisher)", c.rooms, c.conns)
	}
	return nil
}

// usage prints what -h shows: every flag but the internal ones.
func usage(fs *flag.FlagSet, prog string, out io.Writer) {
	fmt.Fprintf(out, "Usage: %s [flags]\n\nMeasures WebSocket servers with real sockets: ours and the gorilla baseline, or any server with -url (see loadtest/README.md).\nExit status: 0; 1 when the run failed or broke a threshold (-max-lost, -max-p99, -min-rate: the report says which); 2 on a bad command line.\n\nFlags:\n", prog)
	public := flag.NewFlagSet(prog, flag.ContinueOnError)
	public.SetOutput(out)
	fs.VisitAll(func(f *flag.Flag) {
		if !internalFlags[f.Name] {
			public.Var(f.Value, f.Name, f.Usage)
			public.Lookup(f.Name).DefValue = f.DefValue // as declared, whatever was parsed before -h
		}
	})
	public.PrintDefaults()
}

// redactHeaders returns args with the value of each -publish-header
// replaced by "…": the reports keep the command line, and a header is
// usually a credential.
func redactHeaders(args []string) []string {
	out := slices.Clone(args)
	redact := func(h string) string {
		name, _, _ := strings.Cut(h, ":")
		return name + ": …"
	}
	for i := 0; i < len(out); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(out[i], "-"), "=")
		switch {
		case out[i] == "-" || out[i] == "--":
			return out // flags end here
		case name != "publish-header" || !strings.HasPrefix(out[i], "-"):
		case hasValue:
			out[i] = out[i][:len(out[i])-len(value)] + redact(value)
		case i+1 < len(out):
			i++
			out[i] = redact(out[i])
		}
	}
	return out
}

// shellJoin quotes args for a POSIX shell, so that the command line in a
// report can be pasted back as it was run.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// shellQuote returns s as a shell word: as is when it holds nothing a shell
// would read otherwise, else in single quotes.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=+/.,:@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
