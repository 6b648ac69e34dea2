package framework

import (
	"bytes"
	"net/http"
	"net/http/cookiejar"
	"strings"

	"golang.org/x/net/html"
)

func newCookieJar() (http.CookieJar, error) { return cookiejar.New(nil) }

// loginForm is an HTML form with a password input.
type loginForm struct {
	action, method string
	loginField     string // first text/email input
	passwordField  string
	hidden         map[string]string
}

// findLoginForm returns the first form in page that has a password input.
func findLoginForm(page []byte) (loginForm, bool) {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return loginForm{}, false
	}
	var found loginForm
	ok := false
	var visitForm func(n *html.Node, f *loginForm)
	visitForm = func(n *html.Node, f *loginForm) {
		if n.Type == html.ElementNode && n.Data == "input" {
			name := attr(n, "name")
			switch typ := strings.ToLower(attr(n, "type")); {
			case name == "":
			case typ == "password":
				if f.passwordField == "" {
					f.passwordField = name
				}
			case typ == "hidden":
				f.hidden[name] = attr(n, "value")
			case typ == "" || typ == "text" || typ == "email":
				if f.loginField == "" {
					f.loginField = name
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visitForm(c, f)
		}
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if ok {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" {
			f := loginForm{action: attr(n, "action"), method: strings.ToUpper(attr(n, "method")), hidden: map[string]string{}}
			visitForm(n, &f)
			if f.passwordField != "" && f.loginField != "" {
				found, ok = f, true
			}
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return found, ok
}

// findLink returns the href of the first <a> or <form action> whose target
// contains substr.
func findLink(page []byte, substr string) (string, bool) {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return "", false
	}
	var href string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if href != "" {
			return
		}
		if n.Type == html.ElementNode {
			var v string
			switch n.Data {
			case "a":
				v = attr(n, "href")
			case "form":
				v = attr(n, "action")
			}
			if v != "" && strings.Contains(v, substr) {
				href = v
				return
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return href, href != ""
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
