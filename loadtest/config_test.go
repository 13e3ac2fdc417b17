package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestHelpHidesInternalFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags("loadtest", []string{"-conns", "5", "-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	help := out.String()
	for name := range internalFlags {
		if strings.Contains(help, "-"+name+" ") || strings.Contains(help, "-"+name+"\n") {
			t.Errorf("-h shows the internal flag -%s", name)
		}
	}
	for _, want := range []string{"-url string", "-chaos-conns int", "(default 10000)"} {
		if !strings.Contains(help, want) {
			t.Errorf("-h lacks %q:\n%s", want, help)
		}
	}
	// The internal flags still parse: the load processes get them.
	cfg, err := parseFlags("loadtest", []string{"-fleet", "-fleet-first", "7"}, &out)
	if err != nil || !cfg.fleetMode || cfg.fleetFrom != 7 {
		t.Fatalf("%+v %v", cfg, err)
	}
}

func TestCommandLineQuoted(t *testing.T) {
	cfg, err := parseFlags("out/bin/loadtest", []string{"-url", "ws://h:1/ws", "-hello", `{"type":"join","room":"{room}"}`, "-publish", "it's", "-ack", ""}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	want := `out/bin/loadtest -url ws://h:1/ws -hello '{"type":"join","room":"{room}"}' -publish 'it'\''s' -ack ''`
	if cfg.command != want {
		t.Fatalf("command\n got %s\nwant %s", cfg.command, want)
	}
}

// A -publish-header is usually a credential: the reports keep its name.
func TestCommandLineHidesHeaderValues(t *testing.T) {
	cfg, err := parseFlags("loadtest", []string{"-publish-header", "Authorization: apikey s3cret", "--publish-header=X-Key: s3cret", "-conns", "5"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cfg.command, "s3cret") || !strings.Contains(cfg.command, "'Authorization: …'") || !strings.Contains(cfg.command, "'--publish-header=X-Key: …'") {
		t.Fatalf("command %s", cfg.command)
	}
	if len(cfg.pubHdr) != 2 || cfg.pubHdr[0] != "Authorization: apikey s3cret" {
		t.Fatalf("headers %q", cfg.pubHdr)
	}
}

// -client picks the load generator's client: lean unless told otherwise,
// and nothing else than lean or gorilla.
func TestClientFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" for a refused command line
	}{
		{args: nil, want: "lean"},
		{args: []string{"-client", "gorilla"}, want: "gorilla"},
		{args: []string{"-client", "gobwas"}},
	} {
		cfg, err := parseFlags("loadtest", tc.args, new(bytes.Buffer))
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%v: accepted", tc.args)
		case tc.want != "" && (err != nil || cfg.client != tc.want):
			t.Errorf("%v: %+v %v, want client %s", tc.args, cfg, err, tc.want)
		}
	}
}
