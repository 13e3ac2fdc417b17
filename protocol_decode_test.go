package realtime

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
)

var decodeCases = []string{
	`{"type":"join","room":"lobby"}`, ` { "room" : "r-1" ,	"type":"leave" }` + "\n", `{"type":"ping"}`, `{}`,
	`{"type":"chat","to":"p1.ab-3"}`, `{"type":"join","room":"r","data":{"a":1}}`, `{"Type":"join"}`,
	`{"type":"join","type":"leave"}`, `{"type":"j\u006fin"}`, `{"type":"join","room":"caf` + "\xc3\xa9" + `"}`,
	`{"type":null}`, `{"type":1}`, `{"type":"join",}`, `{"type":"join"}x`, `{"type":"join"`, `[]`, `null`, ``,
	`{"type":"join","room":"a"}{}`, `{"type":"join" "room":"a"}`, `{"type":"join","extra":"x"}`, `{"type":"a` + "\x01" + `"}`,
}

// Where decodeSimple reads a command, it reads what json.Unmarshal reads;
// it takes the common commands, and leaves everything else to
// json.Unmarshal.
func TestDecodeSimpleAgreesWithJSON(t *testing.T) {
	taken := 0
	for _, s := range decodeCases {
		checkDecode(t, []byte(s))
		var in inbound
		if decodeSimple([]byte(s), &in) {
			taken++
		}
	}
	assert.Equal(t, 5, taken, "the first five cases are the simple ones")
	for _, s := range decodeCases {
		var a, b inbound
		errA := decodeInbound([]byte(s), &a)
		errB := json.Unmarshal([]byte(s), &b)
		assert.Equal(t, errB == nil, errA == nil, "%q", s)
		assert.Equal(t, b, a, "%q", s)
	}
}

// A command of a reconnect storm is read without allocating beyond its
// strings.
func TestDecodeSimpleAllocatesOnlyItsStrings(t *testing.T) {
	p := []byte(`{"type":"join","room":"lobby"}`)
	var in inbound
	allocs := testing.AllocsPerRun(100, func() { decodeSimple(p, &in) })
	assert.LessOrEqual(t, allocs, 2.0)
}

func checkDecode(t *testing.T, p []byte) {
	var fast, slow inbound
	if !decodeSimple(p, &fast) {
		return
	}
	if err := json.Unmarshal(p, &slow); err != nil {
		t.Fatalf("decodeSimple took %q, which json.Unmarshal refuses: %v", p, err)
	}
	if fast.Type != slow.Type || fast.Room != slow.Room || fast.To != slow.To || fast.Data != nil || slow.Data != nil {
		t.Fatalf("%q: decodeSimple read %+v, json.Unmarshal %+v", p, fast, slow)
	}
}

// FuzzDecodeSimple: whatever decodeSimple takes, json.Unmarshal takes and
// reads the same.
func FuzzDecodeSimple(f *testing.F) {
	for _, s := range decodeCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) { checkDecode(t, p) })
}

func BenchmarkDecodeJoin(b *testing.B) {
	p := []byte(`{"type":"join","room":"lobby"}`)
	b.Run("simple", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in inbound
			decodeInbound(p, &in)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in inbound
			json.Unmarshal(p, &in)
		}
	})
}
