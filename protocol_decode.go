package realtime

import "encoding/json"

// decodeInbound parses a client command. The commands of a reconnect storm
// ({"type":"join","room":"lobby"}, leave, ping) are read by decodeSimple
// without encoding/json (whose reflection was about 7% of the server's CPU
// per connect); anything else goes to json.Unmarshal.
func decodeInbound(payload []byte, in *inbound) error {
	if decodeSimple(payload, in) {
		return nil
	}
	*in = inbound{}
	return json.Unmarshal(payload, in)
}

// decodeSimple reads payload into in when it is a JSON object whose members
// are only "type", "room" and "to", each once, each a string of printable
// ASCII without escapes, and reports whether it did. For such input the
// result is what json.Unmarshal gives; for anything else (another member,
// "data", null, escapes, non-ASCII, keys in another case, which
// json.Unmarshal would match) it reports false and in is to be discarded.
func decodeSimple(p []byte, in *inbound) bool {
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return false
	}
	var seen [3]bool
	for first := true; ; first = false {
		i = skipSpace(p, i+1)
		if i >= len(p) {
			return false
		}
		if p[i] == '}' && first {
			break
		}
		key, next, ok := simpleString(p, i)
		if !ok {
			return false
		}
		i = skipSpace(p, next)
		if i >= len(p) || p[i] != ':' {
			return false
		}
		val, next, ok := simpleString(p, skipSpace(p, i+1))
		if !ok {
			return false
		}
		var field *string
		var k int
		switch string(key) { // no allocation: compared in place
		case "type":
			field, k = &in.Type, 0
		case "room":
			field, k = &in.Room, 1
		case "to":
			field, k = &in.To, 2
		default:
			return false
		}
		if seen[k] {
			return false
		}
		seen[k] = true
		*field = string(val)
		i = skipSpace(p, next)
		if i >= len(p) {
			return false
		}
		if p[i] == '}' {
			break
		}
		if p[i] != ',' {
			return false
		}
	}
	return skipSpace(p, i+1) == len(p)
}

// simpleString reads the string starting at p[i] (its quote) when it holds
// only printable ASCII other than a backslash, and returns its contents and
// the index after its closing quote.
func simpleString(p []byte, i int) ([]byte, int, bool) {
	if i >= len(p) || p[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(p); j++ {
		switch c := p[j]; {
		case c == '"':
			return p[i+1 : j], j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}
