// Command image builds Portcullis's container image without a Docker
// daemon: a multi-arch OCI image (an image index with one image per
// platform) written as an OCI image layout on disk, with
// go-containerregistry.
//
// There is no base image to pull (the build may run offline): the image
// starts empty and gets one layer with what distroless/static:nonroot would
// bring (CA certificates, /etc/passwd and /etc/group with the nonroot user
// 65532, /tmp, the nonroot home) and one layer with the static binaries. The
// Dockerfile at the repository's root builds the same image with Docker;
// TestDockerfileDescribesTheSameImage keeps the two in step.
//
//	go run ./image --binaries ../../_output/release --version v1.2.3 --out ../../_output/image
//
// Push the result with any OCI tool, e.g. `crane push _output/image REF` or
// `skopeo copy --all oci:_output/image:v1.2.3 docker://REF`.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	var o options
	var platforms, created string
	flag.StringVar(&o.binaries, "binaries", "_output/release", "directory with the static binaries portcullis-server_<os>_<arch> and portcullis_<os>_<arch> (make release)")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch pairs")
	flag.StringVar(&o.version, "version", "", "the image's version: its tag in the layout and org.opencontainers.image.version")
	flag.StringVar(&o.revision, "revision", "", "the source commit, for org.opencontainers.image.revision")
	flag.StringVar(&created, "created", "", "RFC 3339 time recorded as the image's and the files' time (use the commit's time: the image stays reproducible); the Unix epoch when empty")
	flag.StringVar(&o.caCerts, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of CA certificates copied to /etc/ssl/certs/ca-certificates.crt")
	flag.StringVar(&o.repository, "repository", "ghcr.io/portcullis-dev/portcullis-server", "the repository the image is meant for (org.opencontainers.image.ref.name gets REPOSITORY:VERSION)")
	flag.StringVar(&o.out, "out", "_output/image", "directory of the OCI image layout to write (replaced)")
	flag.Parse()

	o.platforms = strings.Split(platforms, ",")
	if created != "" {
		t, err := time.Parse(time.RFC3339, created)
		if err != nil {
			fmt.Fprintf(os.Stderr, "--created: %v (want RFC 3339, e.g. 2026-12-04T20:00:00Z)\n", err)
			os.Exit(2)
		}
		o.created = t.UTC()
	}
	digest, err := build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%s, %s) to %s\n", o.repository+":"+o.version, strings.Join(o.platforms, ", "), digest, o.out)
}
