package main

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"stdlb/lb"
)

// rateLimit wires the bucket package into the balancer. (Placeholder until
// the limiter lands.)
type rateLimit struct{}

func newRateLimit(cfg *Config, logger *slog.Logger) (*rateLimit, error) { return &rateLimit{}, nil }

func (r *rateLimit) admitFunc() func(http.ResponseWriter, *http.Request) lb.Admission { return nil }

func (r *rateLimit) start(ctx context.Context, wg *sync.WaitGroup) {}

func (r *rateLimit) reload(cfg *Config) error { return nil }

func checkClientsFile(cfg *Config) error { return nil }
