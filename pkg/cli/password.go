package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"golang.org/x/term"

	"portcullis.dev/portcullis/pkg/portalapi"
)

// Password logins, for identity providers that are LDAP directories: the
// CLI asks for the user name and password in the terminal (the password
// with echo off), or, for CI, takes them from the environment, and sends
// them to Portcullis (portalapi.PathPassword, over the same TLS as every
// other request). Never from the command line: arguments are visible to
// every user of the machine (ps) and land in shell histories.
const (
	usernameEnv     = "PORTCULLIS_USERNAME"
	passwordEnv     = "PORTCULLIS_PASSWORD"
	passwordFileEnv = "PORTCULLIS_PASSWORD_FILE"
)

// maxPasswordFile bounds the password file read.
const maxPasswordFile = 4096

// passwordInEnv reports whether the environment holds a user name and a
// password (or password file): a login can then happen without a terminal.
func (d *Deps) passwordInEnv() bool {
	return d.Getenv(usernameEnv) != "" && (d.Getenv(passwordEnv) != "" || d.Getenv(passwordFileEnv) != "")
}

// passwordIdP returns the LDAP identity provider this login is for, if it
// is a password login: the one --idp names, or the only identity provider
// there is, or, with credentials in the environment, the only LDAP one.
func (d *Deps) passwordIdP(t *target, info *portalapi.ClustersResponse) (portalapi.IdPInfo, bool) {
	var ldaps []portalapi.IdPInfo
	for _, p := range info.IdentityProviders {
		if t.idp != "" && p.Name == t.idp {
			if p.Type != portalapi.IdPTypeLDAP {
				return portalapi.IdPInfo{}, false
			}
			return p, true
		}
		if p.Type == portalapi.IdPTypeLDAP {
			ldaps = append(ldaps, p)
		}
	}
	switch {
	case t.idp != "":
		return portalapi.IdPInfo{}, false
	case len(info.IdentityProviders) == 1 && len(ldaps) == 1:
		return ldaps[0], true
	case len(ldaps) == 1 && d.passwordInEnv():
		return ldaps[0], true
	}
	return portalapi.IdPInfo{}, false
}

// passwordLogin logs in to an LDAP identity provider with a user name and
// password.
func (d *Deps) passwordLogin(ctx context.Context, c *portalClient, idp portalapi.IdPInfo) (*portalapi.TokenResponse, error) {
	username, password, err := d.passwordCredentials(c.t, idp)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(map[string]string{"username": username, "password": password, "idp": idp.Name, "cluster": c.t.cluster})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.t.server+portalapi.PathPassword, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, raw, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(raw, ae) != nil || ae.Code == "" {
			return nil, fmt.Errorf("%s answered %s to %s: is it a Portcullis server that knows password logins (check --server)?", c.t.server, resp.Status, portalapi.PathPassword)
		}
		if ae.Code == "invalid_grant" {
			// Not a session that ended: the password (or name) was refused.
			return nil, fmt.Errorf("%s (identity provider %s)", strings.TrimSuffix(ae.Description, "."), idp.DisplayName)
		}
		return nil, ae
	}
	var out portalapi.TokenResponse
	if err := c.decodeAnswer(raw, portalapi.PathPassword, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// passwordCredentials returns the user name and password: from
// PORTCULLIS_USERNAME and PORTCULLIS_PASSWORD (or the file
// PORTCULLIS_PASSWORD_FILE names), else asked in the terminal.
func (d *Deps) passwordCredentials(t *target, idp portalapi.IdPInfo) (string, string, error) {
	username := d.Getenv(usernameEnv)
	password := d.Getenv(passwordEnv)
	if password == "" {
		if path := d.Getenv(passwordFileEnv); path != "" {
			pw, err := readPasswordFile(path)
			if err != nil {
				return "", "", err
			}
			password = pw
		}
	}
	if username != "" && password != "" {
		return username, password, nil
	}
	in, ok := d.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return "", "", fmt.Errorf("%s asks for a user name and password, and there is no terminal to ask them in: set %s and %s (or %s, a file holding the password)",
			idp.DisplayName, usernameEnv, passwordEnv, passwordFileEnv)
	}
	if username == "" {
		fmt.Fprintf(d.Stderr, "Log in to %s with %s.\nUser name: ", t.server, idp.DisplayName)
		line, err := readLine(in)
		if err != nil {
			return "", "", fmt.Errorf("reading the user name: %w", err)
		}
		username = strings.TrimSpace(line)
		if username == "" {
			return "", "", errors.New("no user name was given")
		}
	}
	fmt.Fprintf(d.Stderr, "Password for %s: ", username)
	pw, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(d.Stderr)
	if err != nil {
		return "", "", fmt.Errorf("reading the password: %w", err)
	}
	if len(pw) == 0 {
		return "", "", errors.New("no password was given")
	}
	return username, string(pw), nil
}

// readLine reads one line from the terminal, byte by byte, so that nothing
// typed after it (the password) is consumed by a buffer.
func readLine(f io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 1024 {
		n, err := f.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return strings.TrimSuffix(string(b), "\r"), nil
			}
			b = append(b, one[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				return string(b), nil
			}
			return "", err
		}
	}
	return "", errors.New("the line is too long")
}

// readPasswordFile reads a password file: its first line.
func readPasswordFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading $%s: %w", passwordFileEnv, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return "", fmt.Errorf("reading $%s: %w", passwordFileEnv, err)
	}
	if len(data) > maxPasswordFile {
		return "", fmt.Errorf("$%s names a file of more than %d bytes: it should hold only the password", passwordFileEnv, maxPasswordFile)
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("$%s names an empty file (%s)", passwordFileEnv, path)
	}
	return pw, nil
}
