package server

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromium finds the browser; make test installs it (apt-get install -y
// chromium). The test fails rather than skips when it is missing.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium: run `apt-get install -y chromium` (make test does it when run as root)")
	return ""
}

// browser starts headless Chromium (one per test) and returns its first
// tab's context, which ends with the test or after 60 s.
func browser(t *testing.T) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Getuid() == 0 {
		opts = append(opts, chromedp.Flag("no-zygote", true))
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancelT := context.WithTimeout(actx, 60*time.Second)
	t.Cleanup(cancelT)
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	return tab
}

// poll waits (10 s at most) until js is true in tab.
func poll(t *testing.T, tab context.Context, js string) {
	t.Helper()
	_, err := chromedp.Run(tab, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, js)
}

// openDemo opens the demo page at addr as user, connects and joins lobby.
func openDemo(t *testing.T, tab context.Context, addr, user string) {
	require.NoError(t, chromedp.Do(tab,
		chromedp.Navigate("http://"+addr+"/?user="+user),
		chromedp.WaitEnabled(chromedp.ID("connect")),
		chromedp.Click(chromedp.ID("connect")),
		chromedp.WaitEnabled(chromedp.ID("join")),
	), user)
	poll(t, tab, `document.getElementById("state").dataset.state === "open"`)
	require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.ID("join"))))
	poll(t, tab, `document.getElementById("log").textContent.includes("`+user+` joined lobby")`)
}

// The demo page, twice in headless Chromium: both join a room, one sends,
// the other sees the message.
func TestDemoPageInBrowser(t *testing.T) {
	addr := startInProcess(t, Options{InsecureDevAuth: true})
	alice := browser(t)
	openDemo(t, alice, addr, "alice")          // starts the browser
	bob, cancelB := chromedp.NewContext(alice) // a second tab of the same browser
	defer cancelB()
	openDemo(t, bob, addr, "bob")
	require.NoError(t, chromedp.Do(alice,
		chromedp.SendKeys(chromedp.ID("text"), "hello from alice"),
		chromedp.Click(chromedp.ID("send")),
	))
	poll(t, bob, `document.getElementById("log").textContent.includes("hello from alice")`)
	log, err := chromedp.Run(bob, chromedp.Text(chromedp.ID("log")))
	require.NoError(t, err)
	require.True(t, strings.Contains(log, "[lobby]"), log)
}
