package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// TestLDAP_PasswordPageInHeadlessChromium logs in on the portal's password
// page as a person would, with the keyboard: a wrong password first, then
// the right one.
func TestLDAP_PasswordPageInHeadlessChromium(t *testing.T) {
	if framework.ChromiumBinary() == "" {
		framework.SkipMissing(t, "Debian's chromium", "apt-get install -y chromium", "the LDAP password page was not checked in a browser")
	}
	t.Parallel()
	s := startLDAPStack(t, false)
	c := framework.StartChromium(t)
	artifacts := filepath.Join(framework.WorkDir(t), "artifacts")

	// The only identity provider: /login goes straight to its password page.
	if err := c.Navigate(s.portcullis.URL + "/login"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/login/corp" }); err != nil {
		t.Fatal(err)
	}
	fill := func(password string) {
		t.Helper()
		var f focused
		for range 6 {
			if err := c.PressKey("Tab", false); err != nil {
				t.Fatal(err)
			}
			if err := c.Eval(describeFocus, &f); err != nil {
				t.Fatal(err)
			}
			if f.Tag == "input" {
				break
			}
		}
		if f.Tag != "input" {
			t.Fatalf("the user name field is not reachable with Tab (focus on %+v)", f)
		}
		if err := c.Eval(`(() => { document.activeElement.select(); return true; })()`, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Type("alice"); err != nil {
			t.Fatal(err)
		}
		_ = c.PressKey("Tab", false)
		var kind string
		if err := c.Eval(`document.activeElement.type`, &kind); err != nil || kind != "password" {
			t.Fatalf("after the user name, focus on a %q field (%v), want the password", kind, err)
		}
		if err := c.Type(password); err != nil {
			t.Fatal(err)
		}
		if err := c.PressKey("Enter", false); err != nil {
			t.Fatal(err)
		}
	}

	fill("not-alices-password")
	var alert, html, user, pw string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(alert, "Invalid username or password") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // the form's POST and the new page
		_ = c.Eval(`(document.querySelector('[role=alert]') || {}).innerText || ''`, &alert)
	}
	if !strings.Contains(alert, "Invalid username or password") {
		t.Fatalf("a wrong password is not announced as an alert: %q", alert)
	}
	if err := c.Eval(`document.documentElement.outerHTML`, &html); err != nil {
		t.Fatal(err)
	}
	if err := c.Eval(`document.getElementById('username').value + '|' + document.getElementById('password').value`, &user); err != nil {
		t.Fatal(err)
	}
	user, pw, _ = strings.Cut(user, "|")
	if strings.Contains(html, "not-alices-password") || pw != "" || user != "alice" {
		t.Fatalf("after a wrong password: user name %q, password field %q; the page must keep the name and never echo the password", user, pw)
	}
	if err := c.Screenshot(filepath.Join(artifacts, "ldap-wrong-password.png")); err != nil {
		t.Fatal(err)
	}

	fill("alice-pw")
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/portal/" }); err != nil {
		t.Fatal(err)
	}
	var text string
	if err := c.Eval(`document.body.innerText`, &text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Login complete", "corp:alice", "corp:devs", "corp:platform", "Cluster c1"} {
		if !strings.Contains(text, want) {
			t.Errorf("the portal after an LDAP login does not show %q:\n%s", want, text)
		}
	}
	if err := c.Screenshot(filepath.Join(artifacts, "ldap-login-complete.png")); err != nil {
		t.Fatal(err)
	}
}
