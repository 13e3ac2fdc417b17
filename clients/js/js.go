// Package js holds the JavaScript client of the realtime protocol
// (realtime.js, an ES module, and its TypeScript declarations
// realtime.d.ts), embedded so that a server can serve the very file the
// demo page loads; see README.md in this directory for the client itself.
package js

import "embed"

// Files holds realtime.js and realtime.d.ts at its root.
//
//go:embed realtime.js realtime.d.ts
var Files embed.FS
