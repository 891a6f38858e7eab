package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
)

func TestStatus_CarriesRatesAndOnRequestHistory(t *testing.T) {
	a := backendNamed(t, "a")
	path := filepath.Join(t.TempDir(), "config.json")
	writeConfig(t, path, "", a.URL)
	r := startApp(t, path)
	resp, err := http.Get("http://" + r.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	status := func(query string) map[string]any {
		resp, err := http.Get("http://" + r.AdminAddr() + "/status" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	plain := status("")
	if _, ok := plain["history"]; ok {
		t.Error("history without ?history=1")
	}
	be := plain["backends"].([]any)[0].(map[string]any)
	for _, k := range []string{"url", "healthy", "requests", "failures", "responses_5xx", "retries", "bytes_sent",
		"bytes_received", "state_changes", "window_seconds", "requests_per_second", "responses_5xx_per_second"} {
		if _, ok := be[k]; !ok {
			t.Errorf("backend lacks %s: %v", k, be)
		}
	}
	if be["bytes_received"] != float64(len("hello from a")) {
		t.Errorf("bytes_received = %v", be["bytes_received"])
	}
	tr, ok := plain["traffic"].(map[string]any)
	if !ok || tr["total"] == nil || tr["refused"] == nil {
		t.Errorf("traffic = %v", plain["traffic"])
	}

	h, ok := status("?history=1")["history"].(map[string]any)
	if !ok || h["interval_seconds"] != 5.0 || h["times"] == nil || len(h["backends"].([]any)) != 1 {
		t.Fatalf("history = %v", h)
	}
}
