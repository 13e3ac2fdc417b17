package server

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var webFiles embed.FS

// demoPage serves the demo chat page and its client at /.
func demoPage() http.Handler {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the files are embedded at build time
	}
	return http.FileServer(http.FS(sub))
}
