package main

import (
	"fmt"
	"strings"
	"time"
)

// trace is one client's recent history for the report: connections, joins,
// acknowledgements, anomalies, and its messages as runs of consecutive
// offsets. It keeps the last maxTraceLines lines.
type trace struct {
	t0    time.Time // the run's start: times are ms since
	lines []string

	inRun            bool
	runEpoch         string
	runFrom, runTo   uint64
	runStart, runEnd time.Time
}

const maxTraceLines = 300

// event adds a line at time at.
func (t *trace) event(at time.Time, format string, args ...any) {
	t.flush()
	t.add(fmt.Sprintf("%9.1f ", ms(at.Sub(t.t0))) + fmt.Sprintf(format, args...))
}

// msg notes message o of epoch, extending the current run when it follows.
func (t *trace) msg(at time.Time, epoch string, o uint64) {
	if t.inRun && epoch == t.runEpoch && o == t.runTo+1 {
		t.runTo, t.runEnd = o, at
		return
	}
	t.flush()
	t.inRun, t.runEpoch, t.runFrom, t.runTo, t.runStart, t.runEnd = true, epoch, o, o, at, at
}

// flush writes out the current run of messages.
func (t *trace) flush() {
	if !t.inRun {
		return
	}
	t.inRun = false
	line := fmt.Sprintf("%9.1f msg %d@%s", ms(t.runStart.Sub(t.t0)), t.runFrom, t.runEpoch)
	if t.runTo > t.runFrom {
		line = fmt.Sprintf("%9.1f msgs %d..%d@%s (until %.1f)", ms(t.runStart.Sub(t.t0)), t.runFrom, t.runTo, t.runEpoch, ms(t.runEnd.Sub(t.t0)))
	}
	t.add(line)
}

func (t *trace) add(line string) {
	t.lines = append(t.lines, line)
	if len(t.lines) >= 2*maxTraceLines {
		t.lines = append(t.lines[:0], t.lines[len(t.lines)-maxTraceLines:]...)
	}
}

// text is the trace, the last maxTraceLines lines or so.
func (t *trace) text() string {
	t.flush()
	return strings.Join(t.lines, "\n")
}
