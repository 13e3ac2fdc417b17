package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// chaosReport is a -chaos run's figures: chaos.json, and the table on
// stdout.
type chaosReport struct {
	Command    string  `json:"command"`
	Members    int     `json:"clients"`
	Publishers int     `json:"publishers"`
	Rooms      int     `json:"rooms"`
	Pods       int     `json:"pods"`
	RunS       float64 `json:"run_s"`
	PublishS   float64 `json:"publishing_s"`

	Kinds []*kindTally `json:"per_fault_kind"` // "before-faults" first
	Total kindTally    `json:"total"`

	Published     int64 `json:"published"`      // written by the publishers
	Accepted      int64 `json:"accepted"`       // came back to their publisher with an offset
	PublishFailed int64 `json:"publish_failed"` // answered publish_failed
	Unconfirmed   int64 `json:"unconfirmed"`    // published - accepted - publish_failed
	Republished   int64 `json:"republished"`    // a publisher's message back at a second offset
	SkippedTicks  int64 `json:"publisher_ticks_skipped"`
	Delivered     int64 `json:"delivered"` // chat messages taken by all members, publishers included
	Expected      int64 `json:"expected"`  // delivered + lost
	// ReportedSkipped is offsets members never got after a recovered:false
	// owned up to them (0: every recovered:false was needless).
	ReportedSkipped int64 `json:"reported_skipped_offsets"`

	Sessions   int            `json:"connections"` // upgrades that succeeded, over all clients
	Reconnects int            `json:"reconnects"`
	JoinAcks   int            `json:"join_acks"`
	LegacyAcks int            `json:"join_acks_without_offset"`
	ExtraAcks  int            `json:"extra_join_acks"`
	NoOffset   int64          `json:"chat_without_offset"`
	BadFrames  int64          `json:"frames_not_json"`
	ErrorCodes map[string]int `json:"error_codes"`
	Reconnect  durStats       `json:"time_to_rejoin"` // from a drop to the next join acknowledgement
	DropsByPod map[string]int `json:"drops_by_fault_and_pod"`

	Faults       []faultRec             `json:"faults"`
	RoomEnds     map[string]roomEndJSON `json:"room_final_positions"`
	RoomFailures map[string]*kindTally  `json:"rooms_with_anomalies"`
	Samples      []sample               `json:"samples"`

	traces                     []string // chaos-traces.txt
	failTraces, reportedTraces int
}

// roomEndJSON is a room's final position in the report.
type roomEndJSON struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// durStats sums up durations in ms.
type durStats struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func durationStats(ds []time.Duration) durStats {
	if len(ds) == 0 {
		return durStats{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 { return ms(ds[min(len(ds)-1, int(q*float64(len(ds))))]) }
	return durStats{Count: len(ds), P50: at(0.5), P99: at(0.99), Max: ms(ds[len(ds)-1])}
}

// count adds one client's counters (cl.mu held).
func (rep *chaosReport) count(cl *chaosClient) {
	rep.Sessions += cl.sessions
	rep.Reconnects += max(cl.sessions-1, 0)
	rep.JoinAcks += cl.acks
	rep.LegacyAcks += cl.legacyAcks
	rep.ExtraAcks += cl.extraAcks
	rep.NoOffset += cl.noOffset
	rep.BadFrames += cl.badFrames
	for code, n := range cl.errCodes {
		rep.ErrorCodes[code] += n
	}
}

// print writes the per-fault table and the totals on stdout.
func (rep *chaosReport) print() {
	fmt.Printf("\nchaos: %d clients + %d publishers in %d rooms, %d pods behind Redis (AOF), %.0f s publishing, %.0f s in all\n\n",
		rep.Members, rep.Publishers, rep.Rooms, rep.Pods, rep.PublishS, rep.RunS)
	fmt.Println("| fault | faults | lost | duplicated | out of order | other failures | recovered:false | connections dropped |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, k := range append(slices.Clone(rep.Kinds), &rep.Total) {
		fmt.Printf("| %s | %d | %d | %d | %d | %d | %d | %d |\n", k.Kind, k.Faults, k.Lost, k.Duplicated, k.OutOfOrder, k.others(), k.RecoveredFalse, k.Drops)
	}
	fmt.Println("\n| fault | published | accepted | publish_failed | unconfirmed |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: |")
	for _, k := range rep.Kinds {
		fmt.Printf("| %s | %d | %d | %d | %d |\n", k.Kind, k.Published, k.Accepted, k.PublishFailed, k.Published-k.Accepted-k.PublishFailed)
	}
	t := rep.Total
	fmt.Printf("\nother failures: %d stale, %d unannounced epoch changes, %d mismatched messages, %d bad acks, %d wild offsets\n",
		t.Stale, t.Unannounced, t.Mismatch, t.BadAck, t.Wild)
	fmt.Printf("reported: %d recovered:false, skipping %d offsets in all; %d acks without a position (epoch \"\"); %d messages before a first ack\n",
		t.RecoveredFalse, rep.ReportedSkipped, t.NoPosition, t.BeforeAck)
	fmt.Printf("messages: %d published, %d accepted (back with an offset), %d publish_failed, %d unconfirmed, %d republished; %d delivered of %d expected\n",
		rep.Published, rep.Accepted, rep.PublishFailed, rep.Unconfirmed, rep.Republished, rep.Delivered, rep.Expected)
	fmt.Printf("connections: %d, reconnects %d, join acks %d (+%d without offset, %d extra), rejoin after a drop p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d)\n",
		rep.Sessions, rep.Reconnects, rep.JoinAcks, rep.LegacyAcks, rep.ExtraAcks, rep.Reconnect.P50, rep.Reconnect.P99, rep.Reconnect.Max, rep.Reconnect.Count)
	if rep.NoOffset > 0 {
		fmt.Printf("WARNING: %d chat messages carried no offset: the server keeps no positions, nothing was checked\n", rep.NoOffset)
	}
	if len(rep.ErrorCodes) > 0 {
		fmt.Printf("errors from the server: %v\n", rep.ErrorCodes)
	}
	rep.printRooms()
}

// printRooms lists the rooms with anomalies, worst first (ten at most).
func (rep *chaosReport) printRooms() {
	var rooms []*kindTally
	for _, k := range rep.RoomFailures {
		rooms = append(rooms, k)
	}
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].failures() > rooms[j].failures() })
	for i, k := range rooms {
		if i == 10 {
			fmt.Printf("… and %d more rooms\n", len(rooms)-10)
			break
		}
		e := rep.RoomEnds[k.Kind]
		fmt.Printf("room %s (final %d@%s): lost %d, duplicated %d, out of order %d, other %d, recovered:false %d\n",
			k.Kind, e.Offset, e.Epoch, k.Lost, k.Duplicated, k.OutOfOrder, k.others(), k.RecoveredFalse)
	}
}

// write writes chaos.json into outDir and prints its path.
func (rep *chaosReport) write(outDir string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(outDir, "chaos.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	tracePath := filepath.Join(outDir, "chaos-traces.txt")
	if err := os.WriteFile(tracePath, []byte(strings.Join(rep.traces, "\n\n")+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Println("report:", path, tracePath)
	return nil
}

// verdict prints why the run failed, if it did, and returns the exit
// status: 1 when the integrity failures exceed maxBad, or when the check
// could not be done (chat messages without offsets, rooms whose final
// position is unknown).
func (rep *chaosReport) verdict(maxBad int64) int {
	var why []string
	if bad := rep.Total.failures(); bad > maxBad {
		why = append(why, fmt.Sprintf("%d integrity failures (allowed %d)", bad, maxBad))
	}
	if rep.NoOffset > 0 {
		why = append(why, fmt.Sprintf("%d chat messages without an offset", rep.NoOffset))
	}
	if len(rep.RoomEnds) < rep.Rooms {
		why = append(why, fmt.Sprintf("final position unknown for %d of %d rooms", rep.Rooms-len(rep.RoomEnds), rep.Rooms))
	}
	if len(why) == 0 {
		fmt.Fprintln(os.Stderr, "chaos: PASSED")
		return 0
	}
	fmt.Fprintln(os.Stderr, "chaos: FAILED:", strings.Join(why, "; "))
	return 1
}
