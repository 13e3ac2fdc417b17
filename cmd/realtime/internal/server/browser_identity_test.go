package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pageRosterHas is a predicate: the page's roster of room lists user with a
// status that includes status ("" for any).
func pageRosterHas(room, user, status string) string {
	return fmt.Sprintf(`(() => { const li = document.querySelector('#roster section[data-room=%q] li[data-user=%q]');
		return li !== null && li.textContent.includes(%q); })()`, room, user, status)
}

// The demo page as alice and bob in one room: a message shows its sender's
// user name (not a connection ID), and each page's roster lists both users
// and follows presence and leaves.
func TestBrowserShowsUserNamesAndRoster(t *testing.T) {
	addr := startInProcess(t, Options{InsecureDevAuth: true})
	alice := browser(t)
	openDemo(t, alice, addr, "alice")
	bob, cancelB := chromedp.NewContext(alice) // a second tab of the same browser
	defer cancelB()
	openDemo(t, bob, addr, "bob")

	// bob's roster comes from his members query after his join; alice's
	// got bob from his join event.
	for _, tab := range []context.Context{alice, bob} {
		poll(t, tab, pageRosterHas("lobby", "alice", "online"))
		poll(t, tab, pageRosterHas("lobby", "bob", "online"))
	}

	require.NoError(t, chromedp.Do(alice,
		chromedp.SendKeys(chromedp.ID("text"), "hello from alice"),
		chromedp.Click(chromedp.ID("send")),
	))
	poll(t, bob, `document.getElementById("log").textContent.includes("[lobby] alice: hello from alice")`)
	log, err := chromedp.Run(bob, chromedp.Text(chromedp.ID("log")))
	require.NoError(t, err)
	assert.NotContains(t, log, "anonymous")
	roster, err := chromedp.Run(bob, chromedp.Text(chromedp.ID("roster")))
	require.NoError(t, err)
	assert.Contains(t, roster, "alice")
	assert.Contains(t, roster, "bob")

	// bob goes away, then leaves the room: alice's roster follows.
	_, err = chromedp.Run(bob, chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById("status");
		s.value = "away"; s.dispatchEvent(new Event("change")); })()`))
	require.NoError(t, err)
	poll(t, alice, pageRosterHas("lobby", "bob", "away"))
	require.NoError(t, chromedp.Do(bob, chromedp.Click(chromedp.ID("leave"))))
	poll(t, alice, `!document.querySelector('#roster li[data-user="bob"]') && !!document.querySelector('#roster li[data-user="alice"]')`)
}

// signBrowserToken signs an HS256 token for user that expires at exp (a whole
// second: the claim has no fraction).
func signBrowserToken(t *testing.T, secret []byte, user string, exp time.Time) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: user, ExpiresAt: jwt.NewNumericDate(exp),
	}).SignedString(secret)
	require.NoError(t, err)
	return s
}

// openDemoWithToken opens the demo page with ?token=tok, runs setup (page
// hooks: window.realtimeRefreshToken), records every state the page shows
// in window.states ("open", "reconnecting 3000": the state and its close
// code), connects and joins lobby as user.
func openDemoWithToken(t *testing.T, tab context.Context, addr, tok, user, setup string) {
	require.NoError(t, chromedp.Do(tab,
		chromedp.Navigate("http://"+addr+"/?token="+tok),
		chromedp.WaitEnabled(chromedp.ID("connect")),
		chromedp.Evaluate[chromedp.Void](`window.states = [];
			new MutationObserver(() => { const s = document.getElementById("state").dataset;
					window.states.push(s.state + (s.code ? " " + s.code : "")); })
				.observe(document.getElementById("state"), {attributes: true, attributeFilter: ["data-state"]});
			`+setup),
		chromedp.Click(chromedp.ID("connect")),
		chromedp.WaitEnabled(chromedp.ID("join")),
	), user)
	poll(t, tab, `document.getElementById("state").dataset.state === "open"`)
	require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.ID("join"))))
	poll(t, tab, `document.getElementById("log").textContent.includes("`+user+` joined lobby")`)
}

// pageStates returns the states the page has shown, in order.
func pageStates(t *testing.T, tab context.Context) []string {
	s, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`window.states`))
	require.NoError(t, err)
	return s
}

// A page whose token expires in a few seconds renews it on the open
// connection (the refresh command) before it expires, and so is not closed.
func TestBrowserRefreshesTokenBeforeItExpires(t *testing.T) {
	secret := []byte("browser-secret")
	addr := startInProcess(t, Options{JWTSecret: secret})
	expiry := time.Now().Add(4 * time.Second).Truncate(time.Second)
	short := signBrowserToken(t, secret, "alice", expiry)
	fresh := signBrowserToken(t, secret, "alice", time.Now().Add(time.Minute))
	page := browser(t)
	openDemoWithToken(t, page, addr, short, "alice", fmt.Sprintf(
		`window.refreshCalls = 0; window.realtimeRefreshToken = async () => { window.refreshCalls++; return %q; };`, fresh))
	poll(t, page, `document.getElementById("user").value === "alice"`) // from the greeting
	poll(t, page, `document.getElementById("log").textContent.includes("token renewed")`)

	time.Sleep(time.Until(expiry.Add(1500 * time.Millisecond))) // past the first token's expiry
	state, err := chromedp.Run(page, chromedp.Evaluate[string](`document.getElementById("state").dataset.state`))
	require.NoError(t, err)
	assert.Equal(t, "open", state)
	assert.Equal(t, []string{"connecting", "open"}, pageStates(t, page), "the connection was never closed")
	calls, err := chromedp.Run(page, chromedp.Evaluate[int](`window.refreshCalls`))
	require.NoError(t, err)
	assert.Equal(t, 1, calls, "one refresh: the new token lasts a minute")

	// The renewed connection still carries messages.
	require.NoError(t, chromedp.Do(page,
		chromedp.SendKeys(chromedp.ID("text"), "still here"),
		chromedp.Click(chromedp.ID("send")),
	))
	poll(t, page, `document.getElementById("log").textContent.includes("[lobby] alice: still here")`)
}

// When a token expires without being renewed the server closes the socket
// with 3000: a page with window.realtimeRefreshToken reconnects with a fresh
// token (and rejoins its room); one without it stays closed.
func TestBrowserReconnectsAfterTokenExpiry(t *testing.T) {
	secret := []byte("browser-secret")
	addr := startInProcess(t, Options{JWTSecret: secret})
	expiry := time.Now().Add(4 * time.Second).Truncate(time.Second)
	short := signBrowserToken(t, secret, "alice", expiry)
	fresh := signBrowserToken(t, secret, "alice", time.Now().Add(time.Minute))
	page := browser(t)
	// The hook refuses until the first token has expired, so that the
	// server closes the socket; then it gives a fresh token.
	openDemoWithToken(t, page, addr, short, "alice", fmt.Sprintf(
		`window.realtimeRefreshToken = async () => { if (Date.now() < %d) throw new Error("not yet"); return %q; };`,
		expiry.UnixMilli(), fresh))

	bobShort := signBrowserToken(t, secret, "bob", expiry)
	bob, cancelB := chromedp.NewContext(page)
	defer cancelB()
	openDemoWithToken(t, bob, addr, bobShort, "bob", "") // no hook: 3000 is final

	poll(t, page, `window.states.includes("reconnecting 3000") && document.getElementById("state").dataset.state === "open"`)
	poll(t, page, `document.getElementById("log").textContent.split("connected as").length === 3`) // connected twice
	// Rejoined: its own messages reach it again.
	require.NoError(t, chromedp.Do(page,
		chromedp.SendKeys(chromedp.ID("text"), "after expiry"),
		chromedp.Click(chromedp.ID("send")),
	))
	poll(t, page, `document.getElementById("log").textContent.includes("[lobby] alice: after expiry")`)
	s := pageStates(t, page)
	i := strings.Join(s, ",")
	assert.Contains(t, i, "open,reconnecting 3000,open", "states: %v", s)

	poll(t, bob, `document.getElementById("state").dataset.state === "closed"`)
	text, err := chromedp.Run(bob, chromedp.Text(chromedp.ID("state")))
	require.NoError(t, err)
	assert.Equal(t, "the token expired; not reconnecting", text, "in words, not a bare code")
	time.Sleep(1500 * time.Millisecond)
	assert.Equal(t, []string{"connecting", "open", "closed 3000"}, pageStates(t, bob), "bob stays closed")
}
