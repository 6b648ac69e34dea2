package main

import (
	"context"
	"flag"
	"net/http"
	"os/signal"
	"sync/atomic"
	"syscall"

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/pkg/webhook"
)

// runHandler is (d): Portcullis's TokenReview handler, wired as pkg/server
// wires it (the same authenticator, verification cache, policy, grants and
// metrics, from a copy of the same store), served by a bare Go TLS server
// like (c)'s, without the generic apiserver's handler chain. It is the
// review's own work on top of what any Go HTTPS server costs: between (c)
// and (d) is the handler, between (d) and (a) the chain around it (caller
// authentication and authorization, audit, in-flight limit, deadline,
// request metrics).
func runHandler(args []string) error {
	fs := flag.NewFlagSet("handler", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	certFile := fs.String("cert", "", "serving certificate")
	keyFile := fs.String("key", "", "serving key")
	clientCA := fs.String("client-ca", "", "CA of client certificates")
	cfgPath := fs.String("config", "", "Portcullis configuration")
	storePath := fs.String("store", "", "bolt store to open instead of the configuration's (a copy: the file is locked by its user)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	cfg.Store.Path = *storePath
	st, err := server.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	km, err := server.NewKeys(ctx, cfg, st, func() bool { return false })
	if err != nil {
		return err
	}
	// Counted as the server's token metrics count them.
	var hits, misses atomic.Int64
	ver, err := token.NewVerifier(km, cfg.IssuerURL, st, token.VerifierOptions{
		CacheSize:   cfg.Tokens.CacheSize,
		OnCacheHit:  func() { hits.Add(1) },
		OnCacheMiss: func() { misses.Add(1) },
	})
	if err != nil {
		return err
	}
	a := &authn.Authenticator{IssuerURL: cfg.IssuerURL, Verifier: ver, Policy: policy.NewHolder(policy.New(cfg)), Grants: st}
	wh := &webhook.Handler{
		Authn: a,
		APIAudiences: func(name string) ([]string, bool) {
			for _, c := range cfg.Clusters {
				if c.Name == name {
					return c.APIAudiences, true
				}
			}
			return nil, false
		},
		DefaultCluster: func() string { return "" },
		Metrics:        webhook.DefaultMetrics(),
	}
	mux := http.NewServeMux()
	mux.Handle(webhook.PathPrefix+"/", wh)
	srv, err := bareTLSServer(mux, *certFile, *keyFile, *clientCA)
	if err != nil {
		return err
	}
	return serveTLS(ctx, srv, *addr)
}
