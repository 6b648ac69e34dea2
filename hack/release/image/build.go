package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is; the Dockerfile says the same (TestDockerfileDescribesTheSameImage).
const (
	// nonroot is distroless's unprivileged user and group.
	nonroot = 65532
	user    = "65532:65532"
	binDir  = "/usr/local/bin"
	// stateDir holds the embedded store and generated certificates.
	stateDir = "/var/lib/portcullis"
	port     = "8443/tcp"
)

var (
	entrypoint = []string{binDir + "/portcullis-server"}
	cmd        = []string{"--config=/etc/portcullis/config.yaml", "--cert-dir=" + stateDir + "/certs"}
	env        = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
	}
	// binaries are copied into binDir from <binaries>/<name>_<os>_<arch>.
	binaries = []string{"portcullis-server", "portcullis"}
)

type options struct {
	binaries   string
	platforms  []string
	version    string
	revision   string
	created    time.Time
	caCerts    string
	repository string
	out        string
}

// build writes the image layout and returns the image index's digest.
func build(o options) (v1.Hash, error) {
	if o.version == "" {
		return v1.Hash{}, errors.New("--version is required")
	}
	if o.created.IsZero() {
		o.created = time.Unix(0, 0).UTC()
	}
	ca, err := os.ReadFile(o.caCerts)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading the CA certificates (--ca-certificates): %w", err)
	}
	base, err := layer(o.created, baseFiles(ca))
	if err != nil {
		return v1.Hash{}, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.platforms {
		goos, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok || goos == "" || arch == "" {
			return v1.Hash{}, fmt.Errorf("--platforms: %q is not os/arch", p)
		}
		img, err := platformImage(o, base, goos, arch)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("%s/%s: %w", goos, arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: goos, Architecture: arch}},
		})
	}
	if err := os.RemoveAll(o.out); err != nil {
		return v1.Hash{}, err
	}
	lp, err := layout.Write(o.out, empty.Index)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("writing the layout %s: %w", o.out, err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.version,
		"io.containerd.image.name":          o.repository + ":" + o.version,
	})); err != nil {
		return v1.Hash{}, fmt.Errorf("writing the image index to %s: %w", o.out, err)
	}
	return idx.Digest()
}

func platformImage(o options, base v1.Layer, goos, arch string) (v1.Image, error) {
	var files []file
	for _, name := range binaries {
		src := filepath.Join(o.binaries, name+"_"+goos+"_"+arch)
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("reading the binary (build it with make release): %w", err)
		}
		files = append(files, file{path: binDir + "/" + name, mode: 0o755, data: b})
	}
	bins, err := layer(o.created, files)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: o.created}, CreatedBy: "portcullis hack/release/image: CA certificates, passwd, group, directories", Comment: "base"}},
		mutate.Addendum{Layer: bins, History: v1.History{Created: v1.Time{Time: o.created}, CreatedBy: "portcullis hack/release/image: " + strings.Join(binaries, ", ") + " into " + binDir}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = goos, arch
	cf.Created = v1.Time{Time: o.created}
	cf.Config = v1.Config{
		User:         user,
		Entrypoint:   entrypoint,
		Cmd:          cmd,
		Env:          env,
		WorkingDir:   "/home/nonroot",
		ExposedPorts: map[string]struct{}{port: {}},
		Volumes:      map[string]struct{}{stateDir: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "portcullis-server",
			"org.opencontainers.image.version":  o.version,
			"org.opencontainers.image.revision": o.revision,
			"org.opencontainers.image.source":   "https://github.com/portcullis-dev/portcullis",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// file is one entry of a layer: a directory when data is nil and mode has
// os.ModeDir.
type file struct {
	path     string
	mode     os.FileMode
	uid, gid int
	data     []byte
}

func dir(path string, mode os.FileMode, owner int) file {
	return file{path: path, mode: os.ModeDir | mode, uid: owner, gid: owner}
}

func baseFiles(ca []byte) []file {
	return []file{
		dir("/etc", 0o755, 0),
		{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		// Go's resolver reads it; without it, it would still use files then DNS.
		{path: "/etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		dir("/etc/portcullis", 0o755, 0),
		dir("/etc/ssl", 0o755, 0),
		dir("/etc/ssl/certs", 0o755, 0),
		{path: "/etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		dir("/home", 0o755, 0),
		dir("/home/nonroot", 0o700, nonroot),
		dir("/root", 0o700, 0),
		dir("/tmp", 0o777|os.ModeSticky, 0),
		dir("/usr", 0o755, 0),
		dir("/usr/local", 0o755, 0),
		dir("/usr/local/bin", 0o755, 0),
		dir("/var", 0o755, 0),
		dir("/var/lib", 0o755, 0),
		// Writable by the server without a volume too (docker run).
		dir(stateDir, 0o700, nonroot),
	}
}

// layer makes a reproducible layer of files: fixed times and owners, in the
// order given, no host metadata.
func layer(t time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name:    strings.TrimPrefix(f.path, "/"),
			Mode:    int64(f.mode.Perm()),
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: t,
			Format:  tar.FormatPAX,
		}
		if f.mode&os.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		if f.mode.IsDir() {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
