package main

import (
	"archive/tar"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

const testVersion = "v1.2.3-imagetest"

// repoRoot is the main module's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "portcullis-server")); err != nil {
		t.Fatalf("not the repository's root: %s", root)
	}
	return root
}

// binariesFor builds the real, static binaries for linux/<host arch>, and
// stands in files for the other architecture (they are not run here).
func binariesFor(t *testing.T, other string) string {
	t.Helper()
	dir := t.TempDir()
	root := repoRoot(t)
	for _, name := range binaries {
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
			"-ldflags", "-X k8s.io/component-base/version.gitVersion="+testVersion,
			"-o", filepath.Join(dir, name+"_linux_"+runtime.GOARCH), "./cmd/"+name)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", name, err, out)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"_linux_"+other), []byte("not run in this test"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

func testOptions(bins, out string) options {
	return options{
		binaries:   bins,
		platforms:  []string{"linux/amd64", "linux/arm64"},
		version:    testVersion,
		revision:   "0123456789abcdef0123456789abcdef01234567",
		created:    time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC),
		caCerts:    writeCA(out),
		repository: "ghcr.io/portcullis-dev/portcullis-server",
		out:        filepath.Join(out, "layout"),
	}
}

func writeCA(dir string) string {
	p := filepath.Join(dir, "ca.pem")
	_ = os.WriteFile(p, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644)
	return p
}

// platformImages reads the layout the way a registry client would: the
// layout's one entry is the multi-arch index, tagged with the version.
func platformImages(t *testing.T, path string) map[string]v1.Image {
	t.Helper()
	top, err := layout.ImageIndexFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != testVersion {
		t.Fatalf("index.json = %+v, want one image index tagged %s", tm.Manifests, testVersion)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out[d.Platform.OS+"/"+d.Platform.Architecture] = img
	}
	return out
}

// unpack writes the image's filesystem (all layers applied) into dir and
// returns the tar headers by path.
func unpack(t *testing.T, img v1.Image, dir string) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	headers := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return headers
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(h.Name)
		headers["/"+name] = h
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Errorf("unexpected entry %s of type %c", h.Name, h.Typeflag)
		}
	}
}

func TestImage_RunsTheServerFromItsOwnFilesystemAsNonRoot(t *testing.T) {
	work := t.TempDir()
	o := testOptions(binariesFor(t, otherArch()), work)
	if _, err := build(o); err != nil {
		t.Fatal(err)
	}
	imgs := platformImages(t, o.out)
	if len(imgs) != 2 || imgs["linux/amd64"] == nil || imgs["linux/arm64"] == nil {
		t.Fatalf("platforms = %v, want linux/amd64 and linux/arm64", slices.Collect(maps.Keys(imgs)))
	}
	for platform, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if cf.OS+"/"+cf.Architecture != platform {
			t.Errorf("%s: the config says %s/%s", platform, cf.OS, cf.Architecture)
		}
		if c.User != "65532:65532" {
			t.Errorf("%s: User = %q, want the non-root 65532:65532", platform, c.User)
		}
		if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/portcullis-server"}) || !slices.Equal(c.Cmd, cmd) {
			t.Errorf("%s: Entrypoint %q Cmd %q", platform, c.Entrypoint, c.Cmd)
		}
		if _, ok := c.Volumes[stateDir]; !ok || c.Labels["org.opencontainers.image.version"] != testVersion {
			t.Errorf("%s: Volumes %v, Labels %v", platform, c.Volumes, c.Labels)
		}
		if mt, _ := img.MediaType(); mt != "application/vnd.oci.image.manifest.v1+json" {
			t.Errorf("%s: media type %s, want an OCI manifest", platform, mt)
		}
	}

	root := filepath.Join(work, "rootfs")
	headers := unpack(t, imgs["linux/"+runtime.GOARCH], root)
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil || !regexp.MustCompile(`(?m)^nonroot:x:65532:65532:[^:]*:/home/nonroot:`).Match(passwd) {
		t.Errorf("/etc/passwd has no nonroot user 65532: %q, %v", passwd, err)
	}
	for path, want := range map[string]int{"/home/nonroot": nonroot, stateDir: nonroot, "/usr/local/bin/portcullis-server": 0, "/etc/ssl/certs/ca-certificates.crt": 0} {
		if h := headers[path]; h == nil || h.Uid != want || h.Gid != want {
			t.Errorf("%s: %+v, want owned by %d", path, h, want)
		}
	}
	if h := headers["/tmp"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp: %+v, want mode 1777", h)
	}

	// Run the binary from the image's filesystem, as the image's user when
	// this test may switch users.
	run := func(args ...string) string {
		t.Helper()
		c := exec.Command(filepath.Join(root, "usr/local/bin/portcullis-server"), args...)
		c.Dir = root
		c.Env = env
		if os.Geteuid() == 0 {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nonroot, Gid: nonroot}}
			// The user must be able to reach the binary: every directory
			// the test made on the way to it (t.TempDir's are 0700).
			for d := root; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+string(filepath.Separator)); d = filepath.Dir(d) {
				_ = os.Chmod(d, 0o755)
			}
		}
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("portcullis-server %s from the image: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("version"); strings.TrimSpace(out) != "portcullis-server "+testVersion {
		t.Errorf("portcullis-server version from the image = %q", out)
	}
	if out := run("--help"); !strings.Contains(out, "--config") {
		t.Errorf("portcullis-server --help from the image does not list --config:\n%s", out)
	}
	cli, err := exec.Command(filepath.Join(root, "usr/local/bin/portcullis"), "version").CombinedOutput()
	if err != nil || !strings.Contains(string(cli), testVersion) {
		t.Errorf("portcullis version from the image: %q, %v", cli, err)
	}
}

func TestImage_IsReproducible(t *testing.T) {
	work := t.TempDir()
	bins := t.TempDir()
	for _, p := range []string{"amd64", "arm64"} {
		for _, name := range binaries {
			if err := os.WriteFile(filepath.Join(bins, name+"_linux_"+p), []byte(name+" for "+p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	o := testOptions(bins, work)
	first, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	o.out = filepath.Join(work, "again")
	second, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Errorf("two builds of the same input: %s and %s", first, second)
	}
	o.version = "v1.2.4"
	o.out = filepath.Join(work, "other")
	if third, err := build(o); err != nil || third == first {
		t.Errorf("another version gave %s (%v), want another digest than %s", third, err, first)
	}
}

func TestImage_RefusesMissingInputs(t *testing.T) {
	work := t.TempDir()
	o := testOptions(t.TempDir(), work)
	if _, err := build(o); err == nil || !strings.Contains(err.Error(), "portcullis-server_linux_amd64") || !strings.Contains(err.Error(), "make release") {
		t.Errorf("missing binaries: %v, want an error naming the file and make release", err)
	}
	o.version = ""
	if _, err := build(o); err == nil || !strings.Contains(err.Error(), "--version") {
		t.Errorf("no version: %v", err)
	}
}

// TestDockerfileDescribesTheSameImage: people with Docker build the image
// from the Dockerfile; it must be the same image: user, entrypoint,
// arguments, paths, port and volume.
func TestDockerfileDescribesTheSameImage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	final := text[strings.LastIndex(text, "\nFROM "):]
	directive := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + ` (.*)$`).FindStringSubmatch(final)
		if m == nil {
			t.Fatalf("the Dockerfile's final stage has no %s", name)
		}
		return strings.TrimSpace(m[1])
	}
	jsonArray := func(name string) []string {
		var v []string
		if err := json.Unmarshal([]byte(directive(name)), &v); err != nil {
			t.Fatalf("%s is not a JSON array: %v", name, err)
		}
		return v
	}
	if got := directive("USER"); got != user {
		t.Errorf("Dockerfile USER %s, the image has %s", got, user)
	}
	if got := jsonArray("ENTRYPOINT"); !slices.Equal(got, entrypoint) {
		t.Errorf("Dockerfile ENTRYPOINT %q, the image has %q", got, entrypoint)
	}
	if got := jsonArray("CMD"); !slices.Equal(got, cmd) {
		t.Errorf("Dockerfile CMD %q, the image has %q", got, cmd)
	}
	if got := jsonArray("VOLUME"); !slices.Equal(got, []string{stateDir}) {
		t.Errorf("Dockerfile VOLUME %q, the image has %s", got, stateDir)
	}
	if got := directive("EXPOSE"); got+"/tcp" != port && got != port {
		t.Errorf("Dockerfile EXPOSE %s, the image has %s", got, port)
	}
	for _, name := range binaries {
		if !strings.Contains(final, "/out/"+name) || !strings.Contains(final, binDir+"/") {
			t.Errorf("the Dockerfile does not copy %s into %s", name, binDir)
		}
	}
	if !strings.Contains(final, "--chown=65532:65532") || !strings.Contains(final, stateDir) {
		t.Errorf("the Dockerfile does not give %s to the nonroot user", stateDir)
	}
}
