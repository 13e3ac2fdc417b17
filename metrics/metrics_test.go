package metrics

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime"
)

// A pod in one process: hub, handler, collector, and a WebSocket server.
func startPod(t *testing.T) (*Collector, string) {
	t.Helper()
	hub := realtime.NewHub(nil)
	h := realtime.NewHandler(hub, nil, realtime.HandlerConfig{
		Authenticate: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
	})
	srv := httptest.NewServer(h.Routes())
	t.Cleanup(srv.Close)
	return New(Sources{Hub: hub, Handler: h}), "ws" + strings.TrimPrefix(srv.URL, "http")
}

// gather returns the collector's metrics by name.
func gather(t *testing.T, c *Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry() // checks descriptions against what is collected
	require.NoError(t, reg.Register(c))
	fams, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value returns the value of name's series with labels (name=value pairs).
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return m.Histogram.GetSampleSum()
		}
	}
	return -1
}

func TestCollectorFollowsTheConventions(t *testing.T) {
	c, _ := startPod(t)
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)
	for _, m := range Metrics() {
		assert.True(t, strings.HasPrefix(m.Name, "realtime_"), m.Name)
		assert.Equal(t, m.Type == "counter", strings.HasSuffix(m.Name, "_total"), m.Name)
	}
}

func TestCollectorCountsByLabel(t *testing.T) {
	c, url := startPod(t)
	ws, _, err := websocket.DefaultDialer.Dial(url+"?user=alice", nil)
	require.NoError(t, err)
	var m realtime.Message
	require.NoError(t, ws.ReadJSON(&m)) // connected
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","room":"r"}`)))
	require.NoError(t, ws.ReadJSON(&m)) // join
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"chat","room":"r","data":1}`)))
	require.NoError(t, ws.ReadJSON(&m)) // the chat, back
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`not json`)))
	require.NoError(t, ws.ReadJSON(&m)) // bad_json
	_, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"https://evil.example"}})
	require.Error(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	fams := gather(t, c)
	assert.EqualValues(t, 1, value(fams, "realtime_users"))
	assert.EqualValues(t, 1, value(fams, "realtime_commands_total", "type", "join"))
	assert.EqualValues(t, 1, value(fams, "realtime_commands_total", "type", "publish"))
	assert.EqualValues(t, 1, value(fams, "realtime_commands_total", "type", "invalid"))
	assert.EqualValues(t, 1, value(fams, "realtime_errors_sent_by_code_total", "code", "bad_json"))
	assert.EqualValues(t, 1, value(fams, "realtime_upgrades_rejected_total", "status", "403"))
	assert.Greater(t, value(fams, "realtime_fanout_seconds"), 0.0, "the histogram's sum is kept")
	assert.Greater(t, value(fams, "realtime_bytes_in_total"), 0.0)

	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	ws.ReadMessage()
	ws.Close()
	require.Eventually(t, func() bool {
		return value(gather(t, c), "realtime_closes_total", "code", "", "reason", "client") == 1
	}, 5*time.Second, 10*time.Millisecond, "a close the client started")
	assert.EqualValues(t, 0, value(gather(t, c), "realtime_users"))

	// Every metric collected is documented in Metrics: gather's pedantic
	// registry fails on one that Describe (Metrics' list) did not name.
}
