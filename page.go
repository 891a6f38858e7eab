package main

import (
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

// pageHTML is the status page: one self-contained file, no external
// assets, rendered once on the server and then refreshed by its own script
// from /status.
//
//go:embed page.html
var pageHTML string

// newPageTemplate parses the status page. It is built per app rather than
// as a package variable so nothing global is shared between instances.
func newPageTemplate() *template.Template {
	return template.Must(template.New("page").Funcs(template.FuncMap{
		"uptime": func(s int64) string {
			d := time.Duration(s) * time.Second
			if d >= 24*time.Hour {
				return fmt.Sprintf("%dd %dh %dm", d/(24*time.Hour), d%(24*time.Hour)/time.Hour, d%time.Hour/time.Minute)
			}
			return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
		},
	}).Parse(pageHTML))
}

// servePage answers GET / on the admin listener.
func (a *app) servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	if err := a.page.Execute(w, a.status()); err != nil {
		a.log.Warn("status page: " + err.Error())
	}
}
