package main

import (
	"fmt"
	"slices"
	"time"
)

// kindTally is what went wrong while one kind of fault was the latest (or,
// as the total, in the whole run).
type kindTally struct {
	Kind           string `json:"kind"`
	Faults         int    `json:"faults"`
	Lost           int64  `json:"lost"`
	Duplicated     int64  `json:"duplicated"`
	OutOfOrder     int64  `json:"out_of_order"`
	Stale          int64  `json:"stale"`
	Unannounced    int64  `json:"unannounced_epoch"`
	Mismatch       int64  `json:"mismatch"`
	BadAck         int64  `json:"bad_ack"`
	Wild           int64  `json:"wild_offset"`
	RecoveredFalse int64  `json:"recovered_false"`
	BeforeAck      int64  `json:"before_ack"`
	NoPosition     int64  `json:"acks_without_position"` // acknowledgements with an empty epoch
	Drops          int64  `json:"connections_dropped"`   // connections seen to end (not a failure)
	Published      int64  `json:"published"`             // by the publishers, when sent
	Accepted       int64  `json:"accepted"`              // of those, back to their publisher with an offset
	PublishFailed  int64  `json:"publish_failed"`        // when answered
}

// add counts n anomalies of kind (an an… constant, or "lost").
func (k *kindTally) add(kind string, n int64) {
	switch kind {
	case "lost":
		k.Lost += n
	case anDup:
		k.Duplicated += n
	case anOOO:
		k.OutOfOrder += n
	case anStale:
		k.Stale += n
	case anEpoch:
		k.Unannounced += n
	case anMismatch:
		k.Mismatch += n
	case anBadAck:
		k.BadAck += n
	case anWildOffset:
		k.Wild += n
	case anRecFalse:
		k.RecoveredFalse += n
	case anBeforeAck:
		k.BeforeAck += n
	case anNoPosition:
		k.NoPosition += n
	}
}

// others is the integrity failures besides lost, duplicated and out of
// order.
func (k *kindTally) others() int64 {
	return k.Stale + k.Unannounced + k.Mismatch + k.BadAck + k.Wild
}

// failures is every integrity failure (recovered:false is reported, not a
// failure; before_ack shows up as the loss it causes, if any).
func (k *kindTally) failures() int64 {
	return k.Lost + k.Duplicated + k.OutOfOrder + k.others()
}

// sample is one anomaly or lost range, for the report.
type sample struct {
	Kind   string  `json:"kind"`
	Fault  string  `json:"fault"`                  // the last fault started before it
	After  string  `json:"after_faults,omitempty"` // how long before it each kind's last fault ended
	AtMs   float64 `json:"at_ms"`
	User   string  `json:"user"`
	Room   string  `json:"room"`
	Conn   string  `json:"connection_id,omitempty"`
	Epoch  string  `json:"epoch"`
	Offset uint64  `json:"offset"`
	To     uint64  `json:"to,omitempty"` // a lost range's last offset
	Detail string  `json:"detail,omitempty"`
}

// samplesPerKind bounds the samples kept of each kind (the earliest).
const samplesPerKind = 40

// tally judges every client against its room's final position and counts,
// per fault kind, what went wrong.
func (r *chaosRun) tally(ends map[string]roomEnd, pubElapsed time.Duration) *chaosReport {
	now := time.Now()
	rep := &chaosReport{Command: r.command, Members: r.cfg.conns, Publishers: len(r.pubs),
		Rooms: len(r.rooms), Pods: len(r.pods), RunS: now.Sub(r.t0).Seconds(), PublishS: pubElapsed.Seconds(),
		Faults: r.faults, ErrorCodes: map[string]int{}, RoomEnds: map[string]roomEndJSON{}, RoomFailures: map[string]*kindTally{}, DropsByPod: map[string]int{}}
	byKind := map[string]*kindTally{"before-faults": {Kind: "before-faults"}}
	rep.Kinds = []*kindTally{byKind["before-faults"]}
	for _, f := range r.faults {
		if byKind[f.Kind] == nil {
			byKind[f.Kind] = &kindTally{Kind: f.Kind}
			rep.Kinds = append(rep.Kinds, byKind[f.Kind])
		}
		byKind[f.Kind].Faults++
	}
	for room, e := range ends {
		rep.RoomEnds[room] = roomEndJSON{e.Offset, e.Epoch}
	}
	var samples []sample
	var downtimes []time.Duration
	for _, cl := range r.clients {
		cl.mu.Lock()
		samples = r.tallyClient(cl, ends[cl.room], now, byKind, rep, samples)
		rep.count(cl)
		downtimes = append(downtimes, cl.downtimes...)
		cl.mu.Unlock()
	}
	for _, k := range rep.Kinds {
		rep.Total.Faults += k.Faults
		rep.Total.Drops += k.Drops
		rep.Total.add("lost", k.Lost)
		for _, kind := range []string{anDup, anOOO, anStale, anEpoch, anMismatch, anBadAck, anWildOffset, anRecFalse, anBeforeAck, anNoPosition} {
			rep.Total.add(kind, k.count(kind))
		}
	}
	rep.Total.Kind = "total"
	rep.Samples = pickSamples(samples)
	rep.Reconnect = durationStats(downtimes)
	for _, p := range r.pubs {
		p.tallyByFault(r.faults, byKind)
		rep.Published += p.sent.Load()
		rep.Accepted += p.acceptedCount()
		rep.PublishFailed += p.failed.Load()
		rep.Republished += p.dupEcho.Load()
		rep.SkippedTicks += p.skipped.Load()
	}
	rep.Unconfirmed = rep.Published - rep.Accepted - rep.PublishFailed
	return rep
}

// count returns the tally's count of anomaly kind.
func (k *kindTally) count(kind string) int64 {
	switch kind {
	case anDup:
		return k.Duplicated
	case anOOO:
		return k.OutOfOrder
	case anStale:
		return k.Stale
	case anEpoch:
		return k.Unannounced
	case anMismatch:
		return k.Mismatch
	case anBadAck:
		return k.BadAck
	case anWildOffset:
		return k.Wild
	case anRecFalse:
		return k.RecoveredFalse
	case anBeforeAck:
		return k.BeforeAck
	case anNoPosition:
		return k.NoPosition
	}
	return 0
}

// tallyClient counts one client's anomalies and losses (cl.mu held), each
// under the fault kind that was the latest when it happened (a lost
// offset: when it was sent, else when its gap was noticed), and per room.
func (r *chaosRun) tallyClient(cl *chaosClient, end roomEnd, now time.Time, byKind map[string]*kindTally, rep *chaosReport, samples []sample) []sample {
	lost := cl.ck.finish(end, now)
	rep.keepTrace(cl, len(lost) > 0)
	room := rep.RoomFailures[cl.room]
	if room == nil {
		room = &kindTally{Kind: cl.room}
		rep.RoomFailures[cl.room] = room
	}
	for _, a := range cl.ck.anomalies {
		fault := faultAt(a.At, r.faults)
		byKind[fault].add(a.Kind, 1)
		room.add(a.Kind, 1)
		samples = append(samples, sample{Kind: a.Kind, Fault: fault, After: lastEnded(a.At, r.t0, r.faults), AtMs: r.since(a.At), User: cl.user, Room: cl.room,
			Conn: a.Conn, Epoch: a.Epoch, Offset: a.Offset, Detail: a.Detail})
	}
	for _, d := range cl.drops {
		if d.at.Before(r.closing) {
			fault := faultAt(d.at, r.faults)
			byKind[fault].Drops++
			rep.DropsByPod[fault+" "+d.pod]++
		}
	}
	for _, lr := range lost {
		var first time.Time
		for o := lr.From; o <= lr.To; o++ {
			at := cl.book.sentAt(lr.Epoch, o)
			if at.IsZero() {
				at = lr.At
			}
			if at.IsZero() {
				at = now
			}
			if first.IsZero() || at.Before(first) {
				first = at
			}
			byKind[faultAt(at, r.faults)].Lost++
			room.Lost++
		}
		detail := "no member got any of them"
		if cl.book.anyKnown(lr.Epoch, lr.From, lr.To) {
			detail = "other members got some or all of them"
		}
		samples = append(samples, sample{Kind: "lost", Fault: faultAt(first, r.faults), After: lastEnded(first, r.t0, r.faults), AtMs: r.since(first), User: cl.user,
			Room: cl.room, Epoch: lr.Epoch, Offset: lr.From, To: lr.To, Detail: detail})
	}
	if room.failures() == 0 && room.RecoveredFalse == 0 {
		delete(rep.RoomFailures, cl.room)
	}
	rep.Delivered += cl.ck.delivered
	for _, l := range cl.ck.ledgers {
		for _, sk := range l.skipped {
			rep.ReportedSkipped += int64(sk[1] - sk[0])
		}
	}
	rep.Expected += cl.ck.delivered
	for _, lr := range lost {
		rep.Expected += int64(lr.To - lr.From + 1)
	}
	return samples
}

// pickSamples keeps the earliest samplesPerKind samples of each kind.
func pickSamples(all []sample) []sample {
	slices.SortStableFunc(all, func(a, b sample) int {
		switch {
		case a.AtMs < b.AtMs:
			return -1
		case a.AtMs > b.AtMs:
			return 1
		}
		return 0
	})
	kept := map[string]int{}
	var out []sample
	for _, s := range all {
		if kept[s.Kind] < samplesPerKind {
			kept[s.Kind]++
			out = append(out, s)
		}
	}
	return out
}

// Traces kept for the report: of clients with integrity failures, and of
// clients whose only anomaly is a reported one (recovered:false).
const (
	maxFailTraces     = 30
	maxReportedTraces = 10
)

// keepTrace keeps cl's trace for chaos-traces.txt if it is among the first
// of its sort (cl.mu held).
func (rep *chaosReport) keepTrace(cl *chaosClient, lost bool) {
	fail, reported := lost, false
	for _, a := range cl.ck.anomalies {
		var k kindTally
		k.add(a.Kind, 1)
		fail = fail || k.failures() > 0
		reported = reported || a.Kind == anRecFalse
	}
	switch {
	case fail && rep.failTraces < maxFailTraces:
		rep.failTraces++
	case !fail && reported && rep.reportedTraces < maxReportedTraces:
		rep.reportedTraces++
	default:
		return
	}
	head := fmt.Sprintf("== %s in %s (failures: %v, ended at %s)", cl.user, cl.room, fail, cl.ck.endText())
	rep.traces = append(rep.traces, head+"\n"+cl.tr.text())
}
