package main

import (
	"context"
	"fmt"
	"time"

	"github.com/gorilla/websocket"
)

// probeUser is the user of the connection that reads the rooms' final
// positions.
const probeUser = "chaos-probe"

// probeEnds reads each room's current position (offset and epoch) from the
// acknowledgements of a fresh connection joining every room. It tries up to
// three times, 10 s each; rooms it could not read are absent (not Known).
func probeEnds(ctx context.Context, url string, rooms []string) (map[string]roomEnd, error) {
	ends := map[string]roomEnd{}
	var err error
	for attempt := 0; attempt < 3 && len(ends) < len(rooms) && ctx.Err() == nil; attempt++ {
		err = probeOnce(ctx, url, rooms, ends)
	}
	if err == nil && len(ends) < len(rooms) {
		err = fmt.Errorf("%d of %d rooms acknowledged with a position", len(ends), len(rooms))
	}
	return ends, err
}

// probeOnce joins every room not yet in ends on one connection and fills
// ends from the acknowledgements that carry an offset, for up to 10 s.
func probeOnce(ctx context.Context, url string, rooms []string, ends map[string]roomEnd) error {
	c, _, err := dialer(0, url).DialContext(ctx, url+"?user="+probeUser, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	want := 0
	for _, room := range rooms {
		if _, ok := ends[room]; ok {
			continue
		}
		want++
		if err := c.WriteMessage(websocket.TextMessage, joinFrame(room, 0, "", false)); err != nil {
			return err
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got := 0; got < want; {
		_, b, err := c.ReadMessage()
		if err != nil {
			return err
		}
		m, d, err := parseWire(b)
		if err != nil || m.Type != "join" || d.UserID != probeUser || d.Offset == nil {
			continue
		}
		if _, ok := ends[m.Room]; !ok {
			ends[m.Room] = roomEnd{Offset: *d.Offset, Epoch: d.Epoch, Known: true}
			got++
		}
	}
	return nil
}
