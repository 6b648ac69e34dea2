package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// focused describes the element that has the keyboard focus.
type focused struct {
	Tag     string `json:"tag"`
	Text    string `json:"text"`
	Outline string `json:"outline"`
}

const describeFocus = `(() => { const e = document.activeElement; const s = getComputedStyle(e);
  return {tag: e.tagName.toLowerCase(), text: (e.innerText || e.value || e.getAttribute('aria-label') || '').trim().slice(0, 60),
          outline: s.outlineStyle + ' ' + s.outlineWidth}; })()`

// tabThrough presses Tab n times and returns what got the focus each time.
func tabThrough(t *testing.T, c *framework.Chromium, n int) []focused {
	t.Helper()
	var out []focused
	for range n {
		if err := c.PressKey("Tab", false); err != nil {
			t.Fatal(err)
		}
		var f focused
		if err := c.Eval(describeFocus, &f); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func TestLogin_PortalPagesInHeadlessChromium(t *testing.T) {
	if framework.ChromiumBinary() == "" {
		framework.SkipMissing(t, "Debian's chromium", "apt-get install -y chromium", "the portal pages were not checked in a browser")
	}
	t.Parallel()
	s := startLoginStack(t, false)
	c := framework.StartChromium(t)
	artifacts := filepath.Join(framework.WorkDir(t), "artifacts")

	// Log in as a person would: the portal sends the browser to Dex.
	if err := c.Navigate(s.portcullis.URL + "/login"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return strings.HasPrefix(u, s.dex.IssuerURL) }); err != nil {
		t.Fatal(err)
	}
	// Dex's login form, filled in by keyboard-free script (Dex's page is not ours to test).
	if err := c.Eval(`(() => { document.querySelector('input[name=login]').value = 'alice@example.com';
	  document.querySelector('input[name=password]').value = 'alice-password';
	  document.querySelector('form').submit(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/portal/" }); err != nil {
		t.Fatal(err)
	}
	var text string
	if err := c.Eval(`document.body.innerText`, &text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Login complete", "alice@example.com", "devs", "Cluster c1", "portcullis kubeconfig --server " + s.portcullis.URL + " --cluster c1"} {
		if !strings.Contains(text, want) {
			t.Errorf("the login-complete page does not show %q:\n%s", want, text)
		}
	}
	shot := filepath.Join(artifacts, "login-complete.png")
	if err := c.Screenshot(shot); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 1000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot of the login-complete page: %s", shot)

	// Keyboard: everything actionable is reached with Tab, in reading order,
	// and shows where the focus is.
	// (Chromium also stops on scrollable regions such as the <pre> blocks,
	// so that they can be scrolled with the keyboard.)
	var stops []focused
	for len(stops) < 12 && (len(stops) == 0 || stops[len(stops)-1].Tag != "button") {
		stops = append(stops, tabThrough(t, c, 1)...)
	}
	var seen []string
	reached := map[string]bool{}
	for _, f := range stops {
		seen = append(seen, fmt.Sprintf("%s %q (%s)", f.Tag, f.Text, f.Outline))
		reached[f.Tag] = true
		if strings.HasPrefix(f.Outline, "none") {
			t.Errorf("the focused %s %q has no visible focus outline", f.Tag, f.Text)
		}
	}
	t.Logf("tab order: %s", strings.Join(seen, " → "))
	if stops[0].Tag != "a" || stops[0].Text != "Skip to content" {
		t.Errorf("the first tab stop is %+v, want the skip link", stops[0])
	}
	if !reached["summary"] || !reached["button"] || stops[len(stops)-1].Text != "Log out of this browser" {
		t.Fatalf("the token disclosure and the Log out button are not all reachable with Tab: %v", seen)
	}
	// Enter on the focused "Log out" button logs out.
	if err := c.PressKey("Enter", false); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return strings.HasSuffix(u, "/portal/logout") }); err != nil {
		t.Fatal(err)
	}
	if err := c.Eval(`document.body.innerText`, &text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "You are logged out") {
		t.Errorf("after pressing Enter on Log out: %s", text)
	}

	// The device page is usable with the keyboard alone: Tab to the code,
	// type it, Tab to the button, Enter.
	if err := c.Navigate(s.portcullis.URL + "/device"); err != nil {
		t.Fatal(err)
	}
	var f focused
	for range 5 {
		_ = c.PressKey("Tab", false)
		if err := c.Eval(describeFocus, &f); err != nil {
			t.Fatal(err)
		}
		if f.Tag == "input" {
			break
		}
	}
	if f.Tag != "input" {
		t.Fatalf("the code field is not reachable with Tab (focus on %+v)", f)
	}
	if err := c.Type("BCDF-GHJK"); err != nil {
		t.Fatal(err)
	}
	_ = c.PressKey("Tab", false)
	if err := c.Eval(describeFocus, &f); err != nil || f.Tag != "button" {
		t.Fatalf("after the code field, focus on %+v (%v), want the button", f, err)
	}
	if err := c.PressKey("Enter", false); err != nil {
		t.Fatal(err)
	}
	var alert string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(alert, "matches no device") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // the form's POST and the new page
		if err := c.Eval(`(document.querySelector('[role=alert]') || {}).innerText || ''`, &alert); err != nil {
			t.Logf("page not ready: %v", err)
		}
	}
	if !strings.Contains(alert, "matches no device") {
		t.Errorf("a wrong code is not announced as an alert: %q", alert)
	}
	if err := c.Screenshot(filepath.Join(artifacts, "device-wrong-code.png")); err != nil {
		t.Fatal(err)
	}
}
