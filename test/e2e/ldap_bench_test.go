package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/ldap"
	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// BenchmarkLDAPLogin measures password logins against a local slapd over
// LDAPS (20 users, each in a group nested in another, groups searched
// recursively): the directory's part alone (ldap.Directory.Authenticate:
// connect, TLS, bind, search, bind as the user, bind back, two group
// searches), then whole logins through Portcullis's JSON endpoint (session
// created in bolt, token minted) and refreshes (the user looked up again).
// Logins through Portcullis are rate-limited (50 at once per client), so
// that part takes 40 samples. Run with:
//
//	go test -run '^$' -bench '^BenchmarkLDAPLogin$' -benchtime 1x ./test/e2e/
func BenchmarkLDAPLogin(b *testing.B) {
	var users []framework.LDAPUser
	var members []string
	for i := range 20 {
		name := fmt.Sprintf("user%02d", i)
		users = append(users, framework.LDAPUser{Name: name, Password: name + "-pw"})
		members = append(members, name)
	}
	pki := framework.NewPKI(b)
	l := framework.StartLDAP(b, framework.LDAPOptions{PKI: pki, Users: users, Groups: []framework.LDAPGroup{
		{Name: "devs", Members: members}, {Name: "platform", Members: []string{"group:devs"}},
	}})
	report := func(name string, lat []time.Duration) {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, name+"-p99-ms")
	}
	loadavg := func() {
		if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
			if f, err := strconv.ParseFloat(strings.Fields(string(raw))[0], 64); err == nil {
				b.ReportMetric(f, "loadavg-1m")
			}
		}
	}

	d, err := ldap.New(ldapIdP(l, nil))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var dirLat []time.Duration
	for i := range 400 {
		u := users[i%len(users)]
		start := time.Now()
		res, err := d.Authenticate(ctx, u.Name, u.Password)
		dirLat = append(dirLat, time.Since(start))
		if err != nil || len(res.Identity.Groups) != 2 {
			b.Fatalf("%s: %+v, %v", u.Name, res, err)
		}
	}
	report("directory", dirLat)

	port := framework.FreePort(b)
	dir := framework.WorkDir(b)
	p := framework.StartPortcullis(b, framework.PortcullisOptions{ConfigYAML: ldapConfig(port, dir, l, false, "", ""), Port: port})
	hc := p.HTTPClient()
	post := func(path string, body map[string]string) (portalapi.TokenResponse, time.Duration) {
		raw, _ := json.Marshal(body)
		start := time.Now()
		resp, err := hc.Post(p.URL+path, "application/json", bytes.NewReader(raw))
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: %s: %s", path, resp.Status, out)
		}
		var tr portalapi.TokenResponse
		if err := json.Unmarshal(out, &tr); err != nil {
			b.Fatal(err)
		}
		return tr, took
	}
	var loginLat, refreshLat []time.Duration
	var refresh []string
	for i := range 40 {
		u := users[i%len(users)]
		tr, took := post(portalapi.PathPassword, map[string]string{"username": u.Name, "password": u.Password, "cluster": "c1"})
		loginLat = append(loginLat, took)
		refresh = append(refresh, tr.RefreshToken)
	}
	for round := range 5 {
		for i := range refresh {
			tr, took := post(portalapi.PathRefresh, map[string]string{"refresh_token": refresh[i], "cluster": "c1"})
			refreshLat = append(refreshLat, took)
			refresh[i] = tr.RefreshToken
			_ = round
		}
	}
	report("portal-login", loginLat)
	report("portal-refresh", refreshLat)
	loadavg()
}
