// Package web holds the report's HTML templates and static assets. It exists
// because go:embed cannot reach a parent directory of the package using it.
package web

import "embed"

// Templates holds the html/template files of the report pages.
//
//go:embed templates/*.html
var Templates embed.FS

// Static holds the stylesheet, script and icon served under /static/. The
// README's screenshot lives beside them but is not embedded.
//
//go:embed static/*.css static/*.js static/*.svg
var Static embed.FS
