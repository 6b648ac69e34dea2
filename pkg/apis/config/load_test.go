package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/testkit"

	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

const (
	minimalExample = "../../../artifacts/config/minimal.yaml"
	fullExample    = "../../../artifacts/config/portcullis.yaml"
)

// header starts every test file.
const header = "apiVersion: config.portcullis.dev/v1alpha1\nkind: PortcullisConfiguration\n"

// minimal is a valid configuration that needs no files; tests append to
// it, or replace its lines.
const minimal = header + `issuerURL: https://portcullis.example.com
store:
  path: /tmp/state.db
clusters:
- name: dev
  access:
    allUsers: true
`

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fileFieldRE finds the fields of an example that name a file.
var fileFieldRE = regexp.MustCompile(`(?m)^(\s*(?:-\s+)?(\w*File):\s*)(\S+)\s*$`)

// withFilesInPlace rewrites every "...File: path" of a configuration to a
// file created in a temporary directory (a PEM CA for CA files), so that
// the configuration can be validated fully. It returns the new text and the
// original paths.
func withFilesInPlace(t testing.TB, data []byte) ([]byte, []string) {
	t.Helper()
	dir := t.TempDir()
	ca := testkit.NewCA(t, "test CA").CertPEM
	var originals []string
	out := fileFieldRE.ReplaceAllFunc(data, func(line []byte) []byte {
		m := fileFieldRE.FindSubmatch(line)
		key, path := string(m[2]), string(m[3])
		originals = append(originals, path)
		content := []byte("not a certificate\n")
		if strings.Contains(key, "CA") || strings.HasPrefix(key, "certificateAuthority") {
			content = ca
		}
		name := fmt.Sprintf("%d-%s", len(originals), filepath.Base(path))
		return append(m[1], writeFile(t, dir, name, content)...)
	})
	return out, originals
}

// wantErr is an expected field error: its path, and text its message
// (including the value) contains.
type wantErr struct {
	field, text string
}

// checkConfigErrors fails unless err is an *Error holding exactly the
// wanted problems, in any order.
func checkConfigErrors(t *testing.T, err error, wants ...wantErr) {
	t.Helper()
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got error %v, want a *config.Error", err)
	}
	used := make([]bool, len(cerr.Errs))
	for _, w := range wants {
		found := false
		for i, e := range cerr.Errs {
			if !used[i] && e.Field == w.field && strings.Contains(e.Error(), w.text) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing problem: %s: ...%s...", w.field, w.text)
		}
	}
	for i, e := range cerr.Errs {
		if !used[i] {
			t.Errorf("unexpected problem: %v", e)
		}
	}
	if t.Failed() {
		t.Logf("the whole error:\n%v", err)
	}
}

func TestDecodeAppliesEveryDefault(t *testing.T) {
	cfg, err := Decode("test", []byte(minimal+`identityProviders:
- name: dex
  issuer: {url: https://dex.example.com}
  claimMappings:
    username: {claim: sub, prefix: "dex:"}
  clientID: portcullis
  userInfo: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	idp := cfg.IdentityProviders[0]
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"apiVersion", cfg.APIVersion, "config.portcullis.dev/v1alpha1"},
		{"kind", cfg.Kind, "PortcullisConfiguration"},
		{"store.type", cfg.Store.Type, "bolt"},
		{"tokens.lifetime", cfg.Tokens.Lifetime.Duration, 15 * time.Minute},
		{"tokens.maxLifetime", cfg.Tokens.MaxLifetime.Duration, 24 * time.Hour},
		{"tokens.keyRotationPeriod", cfg.Tokens.KeyRotationPeriod.Duration, 24 * time.Hour},
		{"tokens.cacheSize", cfg.Tokens.CacheSize, 10000},
		{"identityProviders[0].displayName", idp.DisplayName, "dex"},
		{"identityProviders[0].issuer.audiences", fmt.Sprint(idp.Issuer.Audiences), "[portcullis]"},
		{"identityProviders[0].scopes", fmt.Sprint(idp.Scopes), "[openid email profile offline_access]"},
		{"identityProviders[0].userInfo.groupsClaim", idp.UserInfo.GroupsClaim, "groups"},
		{"identityProviders[0].acceptIDTokens", idp.AcceptIDTokens, false},
		{"clusters[0].apiAudiences", fmt.Sprint(cfg.Clusters[0].APIAudiences), "[https://kubernetes.default.svc]"},
		{"clusters[0].tokenLifetime", cfg.Clusters[0].TokenLifetime == nil, true},
		{"portal.sessionIdleTimeout", cfg.Portal.SessionIdleTimeout.Duration, 12 * time.Hour},
		{"portal.sessionMaxLifetime", cfg.Portal.SessionMaxLifetime.Duration, 168 * time.Hour},
		{"portal.refreshReuseGrace", cfg.Portal.RefreshReuseGrace.Duration, 30 * time.Second},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
	// store.path has a default too, but minimal sets it.
	cfg, err = Decode("test", []byte(strings.Replace(minimal, "  path: /tmp/state.db\n", "  type: bolt\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Path != "/var/lib/portcullis/state.db" {
		t.Errorf("store.path = %q, want the default /var/lib/portcullis/state.db", cfg.Store.Path)
	}
}

func TestAFullConfigurationRoundTrips(t *testing.T) {
	data, err := os.ReadFile(fullExample)
	if err != nil {
		t.Fatal(err)
	}
	data, _ = withFilesInPlace(t, data)
	cfg, err := Decode("portcullis.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	// What is set is kept; what is not is defaulted.
	if got := cfg.Clusters[1].TokenLifetime.Duration; got != 5*time.Minute {
		t.Errorf("clusters[1].tokenLifetime = %v, want 5m", got)
	}
	if got := cfg.IdentityProviders[0].Issuer.Audiences; fmt.Sprint(got) != "[portcullis]" {
		t.Errorf("identityProviders[0].issuer.audiences = %v, want the default [portcullis]", got)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Decode("round trip", out)
	if err != nil {
		t.Fatalf("the encoded configuration does not decode: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(cfg, again) {
		a, _ := json.MarshalIndent(cfg, "", "  ")
		b, _ := json.MarshalIndent(again, "", "  ")
		t.Errorf("the configuration changed in a round trip:\n%s\nbecame\n%s", a, b)
	}
}

func TestDecodeRefusesFilesThatAreNotAConfiguration(t *testing.T) {
	huge := minimal + "# " + strings.Repeat("x", MaxFileSize) + "\n"
	tests := []struct {
		name string
		data string
		want string
	}{
		{"an empty file is refused", "", "test is empty: start from artifacts/config/minimal.yaml"},
		{"a file of blanks is refused", " \n\t\n", "test is empty"},
		{"a file of only comments is refused", "# portcullis\n\n# todo\n", "test holds no configuration"},
		{"a null document is refused", "null\n", "test holds no configuration"},
		{"a file over 1 MiB is refused", huge, "test is larger than 1048576 bytes"},
		{"invalid YAML is refused", header + "issuerURL: [https://a\n", "test is not valid YAML: yaml: line 3: did not find expected"},
		{"YAML indented with tabs is refused", header + "store:\n\tpath: /x\n", "test is not valid YAML"},
		{"a YAML alias bomb is refused", aliasBomb(), "test is not valid YAML: yaml: document contains excessive aliasing"},
		{"YAML nested too deeply is refused", header + "clusters: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n", "test is not valid YAML: yaml: line 3: exceeded max depth"},
		{"a list is not a configuration", "- apiVersion: config.portcullis.dev/v1alpha1\n", "test must be a mapping of fields starting with apiVersion: config.portcullis.dev/v1alpha1 and kind: PortcullisConfiguration, not a list"},
		{"a string is not a configuration", "portcullis\n", "not a string"},
		{"a missing apiVersion is refused", strings.Replace(minimal, "apiVersion: config.portcullis.dev/v1alpha1\n", "", 1), `the file must start with apiVersion: config.portcullis.dev/v1alpha1 and kind: PortcullisConfiguration (it has apiVersion: (none), kind: "PortcullisConfiguration")`},
		{"a wrong apiVersion is refused", strings.Replace(minimal, "v1alpha1", "v1", 1), `(it has apiVersion: "config.portcullis.dev/v1", kind: "PortcullisConfiguration")`},
		{"an apiVersion of the wrong type is refused", strings.Replace(minimal, "config.portcullis.dev/v1alpha1", "[1]", 1), `(it has apiVersion: a list, kind: "PortcullisConfiguration")`},
		{"a missing kind is refused", strings.Replace(minimal, "kind: PortcullisConfiguration\n", "", 1), `(it has apiVersion: "config.portcullis.dev/v1alpha1", kind: (none))`},
		{"a wrong kind is refused", strings.Replace(minimal, "kind: PortcullisConfiguration", "kind: AuthenticationConfiguration", 1), `kind: "AuthenticationConfiguration")`},
		{"a broken second YAML document is refused rather than ignored", minimal + "---\nissuerURL: [\n", "test holds more than one YAML document (separated by '---'), and one after the first is not valid YAML"},
		{"a second YAML document is refused rather than ignored", minimal + "---\nissuerURL: https://other.example.com\n", "test holds 2 YAML documents (separated by '---'): put the whole configuration in one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Decode("test", []byte(tt.data))
			if err == nil {
				t.Fatalf("no error; decoded %+v", cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
			var cerr *Error
			if errors.As(err, &cerr) {
				t.Errorf("a problem with the whole file is a plain error, got a *config.Error: %v", err)
			}
		})
	}
}

// aliasBomb is a small YAML file that expands to a billion values.
func aliasBomb() string {
	s := header + "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 1; i < 10; i++ {
		s += fmt.Sprintf("a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	return s
}

func TestDecodeAcceptsHarmlessVariations(t *testing.T) {
	padded := minimal + "# "
	padded += strings.Repeat("x", MaxFileSize-len(padded)-1) + "\n"
	for _, tt := range []struct{ name, data string }{
		{"a file of exactly 1 MiB is read", padded},
		{"a leading document marker is fine", "---\n" + minimal},
		{"a trailing document marker is fine", minimal + "---\n"},
		{"a trailing document of comments is fine", minimal + "---\n# nothing here\n"},
		{"JSON is fine", `{"apiVersion": "config.portcullis.dev/v1alpha1", "kind": "PortcullisConfiguration", "issuerURL": "https://p.example.com", "clusters": [{"name": "dev", "access": {"allUsers": true}}]}`},
		{"null values take the defaults", minimal + "tokens:\n  lifetime:\n  cacheSize: null\nportal: ~\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode("test", []byte(tt.data)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDecodeReportsFieldProblemsWithTheirPaths(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	idp := `identityProviders:
- name: dex
  issuer: {url: https://dex.example.com}
  clientID: portcullis
  claimMappings:
    username: {claim: email, prefix: ""}
`
	tests := []struct {
		name string
		data string
		want []wantErr
	}{
		// Unknown and duplicate fields.
		{"an unknown top-level field is reported with the fields there are", minimal + "replicas: 3\n",
			[]wantErr{{"replicas", "Forbidden: unknown field: remove it or use one of apiVersion, clusters, groupMappings, identityProviders, issuerURL, kind, notifications, portal, store, tokens, webhook"}}},
		{"a misspelled top-level field is reported with the likely spelling", strings.Replace(minimal, "issuerURL:", "issuerUrl:", 1),
			[]wantErr{{"issuerUrl", `unknown field: did you mean "issuerURL"?`}, {"issuerURL", "Required value"}}},
		{"an unknown nested field is reported with its path", strings.Replace(minimal, "  path: /tmp/state.db\n", "  path: /tmp/state.db\n  size: 1Gi\n", 1),
			[]wantErr{{"store.size", "unknown field: remove it or use one of kubernetes, path, type"}}},
		{"an unknown field in a list is reported with its index", minimal + "- name: prod\n  access: {admins: [jane]}\n",
			[]wantErr{{"clusters[1].access.admins", "unknown field: remove it or use one of allUsers, emailDomains, groups, users"}}},
		{"an unknown field in kube-apiserver's part is reported with its path", minimal + strings.Replace(idp, "{claim: email,", "{claims: email,", 1),
			[]wantErr{{"identityProviders[0].claimMappings.username.claims", `did you mean "claim"?`}, {"identityProviders[0].claimMappings.username", "claim or expression is required"}}},
		{"a duplicate top-level field is reported with both lines", minimal + "issuerURL: https://other.example.com\n",
			[]wantErr{{"issuerURL", "Duplicate value: set on line 3 and again on line 10: keep one"}}},
		{"a duplicate nested field is reported with its path", strings.Replace(minimal, "  path: /tmp/state.db\n", "  path: /tmp/state.db\n  path: /tmp/other.db\n", 1),
			[]wantErr{{"store.path", "set on line 5 and again on line 6"}}},
		{"a duplicate field in a list is reported with its index", minimal + "- name: prod\n  access: {}\n  name: staging\n",
			[]wantErr{{"clusters[1].name", "set on line 10 and again on line 12"}}},
		{"a duplicate field in JSON is reported", `{"apiVersion": "config.portcullis.dev/v1alpha1", "kind": "PortcullisConfiguration",
"issuerURL": "https://p.example.com",
"issuerURL": "https://q.example.com"}`,
			[]wantErr{{"issuerURL", "set on line 2 and again on line 3"}}},

		// Values of the wrong type.
		{"a string for a number is reported", minimal + "tokens: {cacheSize: many}\n",
			[]wantErr{{"tokens.cacheSize", `Invalid value: "many": must be a whole number`}}},
		{"a fraction for a whole number is reported", minimal + "tokens: {cacheSize: 1.5}\n",
			[]wantErr{{"tokens.cacheSize", "Invalid value: 1.5: must be a whole number"}}},
		{"a number too large is reported", minimal + "tokens: {cacheSize: 99999999999999999999}\n",
			[]wantErr{{"tokens.cacheSize", "is too large"}}},
		{"a list for a mapping is reported", minimal + "portal: [12h]\n",
			[]wantErr{{"portal", "must be a mapping of fields (key: value), not a list"}}},
		{"a mapping for a list is reported", minimal + "groupMappings: {groups: [a]}\n",
			[]wantErr{{"groupMappings", "must be a list (lines starting with '- ', or [a, b]), not a mapping"}}},
		{"a string for a list is reported", minimal + "- name: prod\n  access: {groups: sre}\n",
			[]wantErr{{"clusters[1].access.groups", `Invalid value: "sre": must be a list`}}},
		{"a number for a string is reported with a hint", minimal + strings.Replace(idp, "clientID: portcullis", "clientID: 1234", 1),
			[]wantErr{{"identityProviders[0].clientID", "Invalid value: 1234: must be a string: put the value in quotes"}}},
		{"a string for a boolean is reported", strings.Replace(minimal, "allUsers: true", `allUsers: "true"`, 1),
			[]wantErr{{"clusters[0].access.allUsers", `Invalid value: "true": must be true or false`}}},
		{"a bad duration is reported with its path", minimal + "tokens:\n  lifetime: x\n",
			[]wantErr{{"tokens.lifetime", `Invalid value: "x": must be a duration such as "30s", "15m", "1h30m" or "24h"`}}},
		{"a duration in days is reported with its path", minimal + "- name: prod\n  tokenLifetime: 1d\n  access: {}\n",
			[]wantErr{{"clusters[1].tokenLifetime", `Invalid value: "1d": must be a duration`}}},
		{"a number for a duration is reported", minimal + "portal: {refreshReuseGrace: 30}\n",
			[]wantErr{{"portal.refreshReuseGrace", "Invalid value: 30: must be a duration"}}},
		{"a value of the wrong type adds no follow-up problems", strings.Replace(minimal, "- name: dev\n  access:\n    allUsers: true\n", "- dev\n- name: Prod\n", 1),
			[]wantErr{{"clusters[0]", `Invalid value: "dev": must be a mapping of fields`}, {"clusters[1].name", `Invalid value: "Prod"`}}},
		{"a field that depends on a value of the wrong type is not reported", minimal + "  tokenLifetime: 48h\ntokens: {maxLifetime: 2 days}\n",
			[]wantErr{{"tokens.maxLifetime", `Invalid value: "2 days": must be a duration`}}},
		{"several values of the wrong type are all reported", minimal + "tokens: {lifetime: 1w, cacheSize: lots}\nportal: {sessionIdleTimeout: [1h]}\n",
			[]wantErr{{"tokens.lifetime", "must be a duration"}, {"tokens.cacheSize", "must be a whole number"}, {"portal.sessionIdleTimeout", "must be a duration such as \"30s\", \"15m\", \"1h30m\" or \"24h\" (units: ns, us, ms, s, m, h), not a list"}}},

		// Validation, through the file.
		{"an invalid value is reported with its index", minimal + "- name: dev\n  access: {}\n",
			[]wantErr{{"clusters[1].name", `Duplicate value: "dev"`}}},
		{"an http issuerURL is refused", strings.Replace(minimal, "https://portcullis", "http://portcullis", 1),
			[]wantErr{{"issuerURL", "must be an https:// URL"}}},
		{"a CEL claim mapping that does not compile is reported at its path", minimal + strings.Replace(idp, `{claim: email, prefix: ""}`, `{expression: "claims.email +"}`, 1),
			[]wantErr{{"identityProviders[0].claimMappings.username.expression", "compilation failed"}}},
		{"Portcullis's own issuerURL as an identity provider is refused", minimal + strings.Replace(idp, "https://dex.example.com", "https://portcullis.example.com", 1),
			[]wantErr{{"identityProviders[0].issuer.url", "is Portcullis's own issuerURL"}}},

		// Files the configuration points at.
		{"a missing client secret file is reported with its path", minimal + idp + "  clientSecretFile: " + missing + "-secret\n",
			[]wantErr{{"identityProviders[0].clientSecretFile", missing + `-secret": cannot be read (no such file or directory)`}}},
		{"a missing identity provider CA file is reported with its path", minimal + idp + "  certificateAuthorityFile: " + missing + "-dex.crt\n",
			[]wantErr{{"identityProviders[0].certificateAuthorityFile", missing + `-dex.crt": cannot be read`}}},
		{"a missing webhook client CA file is reported with its path", minimal + "webhook: {clientCAFile: " + missing + "-clients.crt}\n",
			[]wantErr{{"webhook.clientCAFile", missing + `-clients.crt": cannot be read`}}},
		{"a missing upstream token file is reported with its path", minimal + "- name: prod\n  access: {}\n  upstream: {server: \"https://prod.example.com\", tokenFile: " + missing + "-token}\n",
			[]wantErr{{"clusters[1].upstream.tokenFile", missing + `-token": cannot be read`}}},
		{"a missing upstream CA file is reported with its path", minimal + "- name: prod\n  access: {}\n  upstream: {server: \"https://prod.example.com\", tokenFile: " + minimalExample + ", certificateAuthorityFile: " + missing + "-ca.crt}\n",
			[]wantErr{{"clusters[1].upstream.certificateAuthorityFile", missing + `-ca.crt": cannot be read`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("test", []byte(tt.data))
			checkConfigErrors(t, err, tt.want...)
		})
	}
}

func TestDecodeReportsFiveMistakesAsFiveProblems(t *testing.T) {
	data := header + `issuerURL: http://portcullis.example.com
store:
  path: /tmp/state.db
  path: /tmp/again.db
tokens:
  lifetime: 15 minutes
clusters:
- name: dev
  acess:
    allUsers: true
- name: Prod
`
	_, err := Decode("portcullis.yaml", []byte(data))
	checkConfigErrors(t, err,
		wantErr{"issuerURL", "must be an https:// URL"},
		wantErr{"store.path", "Duplicate value"},
		wantErr{"tokens.lifetime", "must be a duration"},
		wantErr{"clusters[0].acess", `did you mean "access"?`},
		wantErr{"clusters[1].name", `Invalid value: "Prod"`},
	)
	if !strings.HasPrefix(err.Error(), "portcullis.yaml is not a valid configuration (5 problems):\n") {
		t.Errorf("the message does not start with the count of problems:\n%v", err)
	}
}

func TestErrorShowsEachProblemWithItsLine(t *testing.T) {
	data := header + `issuerURL: https://portcullis.example.com/
tokens:
  lifetime: 1d
clusters:
- name: dev
  access:
    allUser: true
  upstream:
    server: https://dev.example.com
`
	_, err := Decode("portcullis.yaml", []byte(data))
	want := `portcullis.yaml is not a valid configuration (4 problems):
  - line 3: issuerURL: Invalid value: "https://portcullis.example.com/": remove the trailing '/'
  - line 5: tokens.lifetime: Invalid value: "1d": must be a duration such as "30s", "15m", "1h30m" or "24h" (units: ns, us, ms, s, m, h)
  - line 9: clusters[0].access.allUser: Forbidden: unknown field: did you mean "allUsers"?
  - line 10: clusters[0].upstream.tokenFile: Required value: the proxy needs a credential for the upstream API server: set exactly one of tokenFile (a bearer token file, with server), kubeconfig (path and optional context) or inCluster: true (Portcullis's own service account)`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	t.Run("a missing file is reported with its path and the flag", func(t *testing.T) {
		path := filepath.Join(dir, "nope.yaml")
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "--config") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("a directory is refused", func(t *testing.T) {
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("a file over 1 MiB is refused without reading it all", func(t *testing.T) {
		path := writeFile(t, dir, "huge.yaml", []byte(minimal+"# "+strings.Repeat("x", 2*MaxFileSize)+"\n"))
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "is larger than 1048576 bytes") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("problems are reported under the file's path", func(t *testing.T) {
		path := writeFile(t, dir, "bad.yaml", []byte(minimal+"bogus: 1\n"))
		if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+" is not a valid configuration (1 problem):\n  - line 10: bogus: ") {
			t.Errorf("got %v", err)
		}
	})
}

func TestTheMinimalExampleDecodes(t *testing.T) {
	cfg, err := Load(minimalExample)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IssuerURL != "https://127.0.0.1:8443" || len(cfg.Clusters) != 1 || cfg.Clusters[0].Name != "demo" || !cfg.Clusters[0].Access.AllUsers {
		t.Errorf("unexpected configuration: %+v", cfg)
	}
	if len(cfg.IdentityProviders) != 0 || cfg.Webhook.ClientCAFile != "" {
		t.Errorf("minimal.yaml must need no other files: %+v", cfg)
	}
}

func TestTheFullExample(t *testing.T) {
	data, err := os.ReadFile(fullExample)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("without its files it fails only for the files, each named", func(t *testing.T) {
		_, paths := withFilesInPlace(t, data)
		if len(paths) < 5 {
			t.Fatalf("the example should name the IdP CA, client secret, upstream CA and token, and webhook CA files; found %v", paths)
		}
		_, err := Decode("portcullis.yaml", data)
		var cerr *Error
		if !errors.As(err, &cerr) {
			t.Fatalf("got %v, want a *config.Error", err)
		}
		if len(cerr.Errs) != len(paths) {
			t.Errorf("got %d problems for %d files:\n%v", len(cerr.Errs), len(paths), err)
		}
		for _, e := range cerr.Errs {
			if !strings.HasSuffix(e.Field, "File") || !strings.Contains(e.Detail, "cannot be read (no such file or directory)") {
				t.Errorf("a problem other than a missing file: %v", e)
			}
		}
		for _, p := range paths {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", p)) {
				t.Errorf("the error does not name %s", p)
			}
		}
	})
	t.Run("with its files in place it is valid and means what its comments say", func(t *testing.T) {
		data, _ := withFilesInPlace(t, data)
		cfg, err := Decode("portcullis.yaml", data)
		if err != nil {
			t.Fatal(err)
		}
		idp := cfg.IdentityProviders[0]
		if m := idp.ClaimMappings; m.Username.Claim != "email" || m.Username.Prefix == nil || *m.Username.Prefix != "" ||
			m.Groups.Claim != "groups" || m.Groups.Prefix == nil || *m.Groups.Prefix != "oidc:" {
			t.Errorf("claim mappings: %+v", m)
		}
		if idp.ClientID == "" || idp.ClientSecretFile == "" {
			t.Errorf("the IdP has no client: %+v", idp)
		}
		var byDomain, byUser bool
		for _, m := range cfg.GroupMappings {
			byDomain = byDomain || len(m.Match.EmailDomains) > 0
			byUser = byUser || len(m.Match.Users) > 0
		}
		if !byDomain || !byUser {
			t.Errorf("want group mappings by email domain and by user: %+v", cfg.GroupMappings)
		}
		if len(cfg.Clusters) != 2 || cfg.Clusters[0].Upstream != nil || cfg.Clusters[1].Upstream == nil {
			t.Errorf("want a webhook cluster and a proxied cluster: %+v", cfg.Clusters)
		}
		if cfg.Webhook.ClientCAFile == "" {
			t.Error("the example has no webhook.clientCAFile")
		}
	})
}

// FuzzDecode checks that no input makes Decode panic, and that what it
// accepts is valid and what it refuses is explained.
func FuzzDecode(f *testing.F) {
	for _, path := range []string{minimalExample, fullExample} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		minimal,
		minimal + "bogus: 1\nissuerURL: x\n",
		minimal + "tokens: {lifetime: x, cacheSize: [1]}\n",
		minimal + "- name: p\n  access: {groups: a}\n  upstream: {server: 1}\n",
		minimal + "---\na: 1\n",
		`{"apiVersion": "config.portcullis.dev/v1alpha1", "kind": "PortcullisConfiguration", "clusters": {}}`,
		header + "a: &a [*a]\n",
		header + "x: &x {a: 1}\ny: {<<: *x, a: 2}\n",
		"- [[[[[[[[[[]]]]]]]]]]\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Decode("fuzz", data)
		switch {
		case err == nil && cfg == nil:
			t.Fatal("no configuration and no error")
		case err == nil:
			if errs := v1alpha1.Validate(cfg); len(errs) > 0 {
				t.Fatalf("accepted an invalid configuration: %v", errs)
			}
		default:
			var cerr *Error
			if errors.As(err, &cerr) && len(cerr.Errs) == 0 {
				t.Fatal("a *config.Error without problems")
			}
			if errors.As(err, &cerr) {
				for _, e := range cerr.Errs {
					if e.Field == "" {
						t.Fatalf("a problem without a path: %v", e)
					}
				}
			}
			if err.Error() == "" {
				t.Fatal("an empty error message")
			}
		}
	})
}

// TestTheDocumentedErrorOutputIsCurrent runs the loader on the broken file
// of docs/configuration.md and compares with the output shown there.
func TestTheDocumentedErrorOutputIsCurrent(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)one mistake\\s+of each kind:\\s+```yaml\\n(.*?)```\\s+```\\n(.*?)\\n```").FindSubmatch(doc)
	if blocks == nil {
		t.Fatal("docs/configuration.md has no broken example followed by its output")
	}
	if _, err := os.Stat("/etc/portcullis/dex/client-secret"); err == nil {
		t.Skip("the example's missing file exists on this machine")
	}
	_, err = Decode("portcullis.yaml", blocks[1])
	if err == nil || err.Error() != string(blocks[2]) {
		t.Errorf("docs/configuration.md shows\n%s\nbut the loader now says\n%v", blocks[2], err)
	}
}
