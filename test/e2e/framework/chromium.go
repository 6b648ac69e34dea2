package framework

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// Chromium is a headless Chromium driven over the Chrome DevTools Protocol,
// for checking pages as a person sees them: screenshots, keyboard
// navigation, forms. It has one page (tab).
type Chromium struct {
	Process *Process
	conn    *websocket.Conn
	nextID  atomic.Int64
	t       testing.TB
}

// ChromiumBinary returns the path of Debian's chromium, or "" if it is not
// installed (apt-get install -y chromium).
func ChromiumBinary() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// StartChromium starts headless Chromium with a fresh profile. It accepts
// any TLS certificate (TEST-ONLY: the pages come from test servers with
// test CAs), and has background networking turned off.
func StartChromium(t testing.TB) *Chromium {
	t.Helper()
	bin := ChromiumBinary()
	if bin == "" {
		t.Fatal("chromium is not installed (apt-get install -y chromium)")
	}
	// Chromium now and then crashes while starting on a loaded machine:
	// give it three tries, each with a fresh profile.
	var (
		p    *Process
		port string
		err  error
	)
	for attempt := 1; attempt <= 3; attempt++ {
		profile := filepath.Join(WorkDir(t), fmt.Sprintf("chromium-profile-%d", attempt))
		if err := os.MkdirAll(profile, 0o700); err != nil {
			t.Fatal(err)
		}
		name := "chromium"
		if attempt > 1 {
			name = fmt.Sprintf("chromium-attempt-%d", attempt)
		}
		p = StartProcess(t, ProcessSpec{
			Name: name,
			Path: bin,
			Args: []string{
				"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
				"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
				"--user-data-dir=" + profile,
				"--ignore-certificate-errors", // TEST-ONLY, see above
				"--disable-background-networking", "--disable-component-update", "--disable-default-apps",
				"--disable-extensions", "--disable-sync", "--no-first-run", "--no-default-browser-check",
				"--disable-crash-reporter", "--metrics-recording-only", "--password-store=basic",
				"--window-size=1024,900",
				"about:blank",
			},
			StopTimeout: 5 * time.Second,
		})
		err = p.WaitUntil(context.Background(), 30*time.Second, "DevTools listening", func(context.Context) error {
			b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
			if err != nil {
				return err
			}
			port, _, _ = strings.Cut(string(b), "\n")
			if port == "" {
				return errors.New("DevToolsActivePort is empty")
			}
			return nil
		})
		if err == nil {
			break
		}
		t.Logf("chromium did not start (attempt %d): %v", attempt, err)
		_ = p.Stop()
	}
	if err != nil {
		t.Fatal(err)
	}
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&targets)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	wsURL := ""
	for _, tg := range targets {
		if tg.Type == "page" {
			wsURL = tg.WS
			break
		}
	}
	if wsURL == "" {
		t.Fatalf("chromium has no page target: %+v", targets)
	}
	conn, err := websocket.Dial(wsURL, "", "http://127.0.0.1/")
	if err != nil {
		t.Fatalf("connecting to chromium's DevTools: %v", err)
	}
	conn.MaxPayloadBytes = 64 << 20
	t.Cleanup(func() { conn.Close() })
	c := &Chromium{Process: p, conn: conn, t: t}
	if _, err := c.Call("Page.enable", nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// Call sends a DevTools command and returns its result.
func (c *Chromium) Call(method string, params any) (json.RawMessage, error) {
	id := c.nextID.Add(1)
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if err := websocket.JSON.Send(c.conn, msg); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var resp struct {
			ID     int64           `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(c.conn, &resp); err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		if resp.ID != id {
			continue // an event, or an answer to nobody
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, resp.Error.Message)
		}
		return resp.Result, nil
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its value
// into out (when not nil).
func (c *Chromium) Eval(expr string, out any) error {
	raw, err := c.Call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	if err != nil {
		return err
	}
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("evaluating %q: %s", expr, r.Exception.Text)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// Navigate loads u and waits until the page is loaded.
//
// A navigation Chromium itself reports as failed (its errorText, e.g.
// net::ERR_CONNECTION_RESET, which shows its own error page) is retried
// once, and logged; a second failure is an error.
func (c *Chromium) Navigate(u string) error {
	for attempt := 1; ; attempt++ {
		raw, err := c.Call("Page.navigate", map[string]any{"url": u})
		if err != nil {
			return err
		}
		var res struct {
			ErrorText string `json:"errorText"`
		}
		_ = json.Unmarshal(raw, &res)
		if res.ErrorText == "" {
			break
		}
		if attempt == 2 {
			return fmt.Errorf("chromium could not load %s: %s", u, res.ErrorText)
		}
		c.t.Logf("chromium could not load %s (%s); retrying once", u, res.ErrorText)
		time.Sleep(500 * time.Millisecond)
	}
	return c.WaitLoaded(func(string) bool { return true })
}

// WaitLoaded waits until the page's URL satisfies ok and its document is
// complete (after navigations, redirects and form submissions).
func (c *Chromium) WaitLoaded(ok func(url string) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var state struct {
			URL   string `json:"url"`
			Ready string `json:"ready"`
		}
		err := c.Eval(`({url: location.href, ready: document.readyState})`, &state)
		if err == nil && state.Ready == "complete" && ok(state.URL) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("page not loaded (last: %+v, %v)", state, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PressKey sends a key press (down and up) to the page, e.g. "Tab", "Enter".
func (c *Chromium) PressKey(key string, shift bool) error {
	codes := map[string]int{"Tab": 9, "Enter": 13, " ": 32}
	mod := 0
	if shift {
		mod = 8
	}
	params := map[string]any{"key": key, "code": key, "windowsVirtualKeyCode": codes[key], "nativeVirtualKeyCode": codes[key], "modifiers": mod}
	if key == "Enter" {
		params["text"] = "\r"
	}
	for _, typ := range []string{"keyDown", "keyUp"} {
		params["type"] = typ
		if _, err := c.Call("Input.dispatchKeyEvent", params); err != nil {
			return err
		}
	}
	return nil
}

// Type inserts text at the focused element, as typing would.
func (c *Chromium) Type(text string) error {
	_, err := c.Call("Input.insertText", map[string]any{"text": text})
	return err
}

// Screenshot saves a PNG of the page's full height to path.
func (c *Chromium) Screenshot(path string) error {
	raw, err := c.Call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	if err != nil {
		return err
	}
	var r struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}
