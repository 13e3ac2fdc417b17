package bench

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/realtimehub/realtime"
)

// BenchmarkJoinStorm: 10,000 connections join one room, each join announced
// to the room as the handler does, in one op. "per-join" is the rule before
// this change (a join event to every member for every join: joins ×
// members deliveries); "coalesced" is today's default rule (single events
// while the room has at most 50 members, then one members_diff per window;
// a 10 s ramp with the default 1 s window is modelled as one diff per 1,000
// joins). It runs the hub's own calls, with connections that only enqueue;
// deliveries/op is what the storm costs the room's members.
func BenchmarkJoinStorm(b *testing.B) {
	const members, maxMembers, joinsPerWindow = 10_000, 50, 1_000
	for _, mode := range []string{"per-join", "coalesced"} {
		b.Run("events="+mode, func(b *testing.B) {
			b.ReportAllocs()
			var deliveries int
			for b.Loop() {
				hub := realtime.NewHub(slog.New(slog.DiscardHandler))
				pending := 0
				for i := range members {
					c := newFrameConn(fmt.Sprint("c-", i))
					hub.Register(c)
					hub.JoinRoom(c, "room")
					ev := joinEvent(c.ID())
					switch {
					case mode == "per-join" || hub.RoomCount("room") <= maxMembers:
						deliveries += hub.RoomCount("room")
						hub.Broadcast(ev)
					default:
						c.Send(ev) // the joiner's acknowledgement
						deliveries++
						if pending++; pending == joinsPerWindow {
							deliveries += hub.RoomCount("room")
							hub.Broadcast(&realtime.Message{Type: realtime.MessageTypeMembersDiff, Room: "room", From: "system",
								Data: json.RawMessage(fmt.Sprintf(`{"joined":%d,"left":0}`, pending))})
							pending = 0
						}
					}
				}
			}
			b.ReportMetric(float64(deliveries)/float64(b.N), "deliveries/op")
		})
	}
}

func joinEvent(id string) *realtime.Message {
	return &realtime.Message{Type: realtime.MessageTypeJoin, Room: "room", From: "system",
		Data: json.RawMessage(`{"room":"room","user_id":"` + id + `"}`)}
}
