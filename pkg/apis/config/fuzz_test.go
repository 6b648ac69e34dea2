package config

import (
	"os"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzDecodeRoundTrip: a configuration Decode accepts, written back out as
// YAML and decoded again, is the same configuration. Defaulting is stable
// (a second pass adds nothing), no accepted field is lost or misread on the
// way out, and what the server writes in messages or dumps can be read back.
//
// Long run (make fuzz runs every target):
//
//	go test ./pkg/apis/config -run '^$' -fuzz FuzzDecodeRoundTrip -fuzztime 60s
func FuzzDecodeRoundTrip(f *testing.F) {
	for _, path := range []string{minimalExample, fullExample} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		data, _ = withFilesInPlace(f, data)
		f.Add(data)
	}
	for _, s := range []string{
		minimal,
		minimal + "tokens: {defaultLifetime: 5m, maxLifetime: 1h}\n",
		minimal + "- name: prod\n  access: {groups: [ops], users: [alice]}\n",
		header + "issuerURL: https://p.example.com:8443/x\nstore: {path: /var/lib/p/state.db}\nclusters: [{name: a, access: {allUsers: true}}]\n",
		`{"apiVersion": "config.portcullis.dev/v1alpha1", "kind": "PortcullisConfiguration", "issuerURL": "https://a", "store": {"path": "/s"}, "clusters": [{"name": "c", "access": {"allUsers": true}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Decode("fuzz", data)
		if err != nil {
			return
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("an accepted configuration cannot be written out: %v", err)
		}
		again, err := Decode("round trip", out)
		if err != nil {
			t.Fatalf("an accepted configuration, written out, is refused: %v\n--- written ---\n%s", err, out)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("an accepted configuration changes when written out and read again\n--- written ---\n%s", out)
		}
	})
}
