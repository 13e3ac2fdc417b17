package server

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/realtimehub/realtime/clients/js"
)

//go:embed web
var webFiles embed.FS

// demoPage serves the demo chat page at / and the JS client beside it:
// /realtime.js and /realtime.d.ts are clients/js's files, the ones an
// application ships, so the demo runs the real client.
func demoPage() http.Handler {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the files are embedded at build time
	}
	page := http.FileServer(http.FS(sub))
	client := http.FileServer(http.FS(js.Files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/realtime.js":
			client.ServeHTTP(w, r)
		case "/realtime.d.ts":
			// The system's MIME table may call .ts MPEG transport stream.
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			client.ServeHTTP(w, r)
		default:
			page.ServeHTTP(w, r)
		}
	})
}
