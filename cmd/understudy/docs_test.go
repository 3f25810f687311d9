package main

// These tests keep README.md and docs/ true to the code: the flags and
// environment variables they name exist, every flag of `understudy serve`
// and `understudy replay` is documented in docs/operations.md, relative links
// lead somewhere, and the README stays short. They read files and parse the
// flag sets' -h output; they start no server and load no ONNX Runtime.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

// maxReadmeLines bounds the README: it is for users; the rest is in docs/.
const maxReadmeLines = 250

// operationsDoc is where every flag must be documented.
const operationsDoc = "docs/operations.md"

// The headings of docs/operations.md under which each command's flags are
// listed, and which its other --flags are checked against.
const (
	serveHeading    = "### `understudy serve`"
	replayHeading   = "### `understudy replay`"
	backtestHeading = "### `understudy backtest`"
)

// nonFlagEnv are UNDERSTUDY_* variables the docs may name that are not
// flags (test switches), with the file that reads each one, so that they
// stay true too.
var nonFlagEnv = map[string]string{
	"UNDERSTUDY_REQUIRE_BROWSER":  "cmd/understudy/report_browser_test.go",
	"UNDERSTUDY_REQUIRE_POSTGRES": "scripts/pg-throwaway.sh",
	"UNDERSTUDY_TEST_POSTGRES":    "cmd/understudy-bench/store.go",
}

var (
	// usageFlag matches a flag line of flag.PrintDefaults: "  -name type".
	usageFlag = regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9-]*)`)
	// docFlag matches a --flag in prose, code or a table, but not a
	// Markdown table rule (|---|) or part of a longer word.
	docFlag = regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])--([a-z][a-z0-9-]*[a-z0-9])`)
	// docEnv matches an UNDERSTUDY_* variable; one ending in _ is a prefix.
	docEnv = regexp.MustCompile(`UNDERSTUDY_[A-Z0-9_]+`)
	// docLink matches the target of a Markdown link or image.
	docLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
)

// flagsFromUsage returns the flag names listed in a flag set's -h output.
func flagsFromUsage(t *testing.T, what, usage string) map[string]bool {
	t.Helper()
	flags := map[string]bool{}
	for _, m := range usageFlag.FindAllStringSubmatch(usage, -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("%s -h listed no flags:\n%s", what, usage)
	}
	return flags
}

// serveFlags returns the flags of `understudy serve`, built by ParseFlags
// itself.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	var buf bytes.Buffer
	if err := NewMain().ParseFlags([]string{"-h"}, &buf); !errors.Is(err, errUsage) {
		t.Fatalf("serve -h: %v, want the usage error", err)
	}
	return flagsFromUsage(t, "understudy serve", buf.String())
}

// replayFlags returns the flags of `understudy replay`.
func replayFlags(t *testing.T) map[string]bool {
	t.Helper()
	var buf bytes.Buffer
	if err := runReplay(context.Background(), []string{"-h"}, io.Discard, &buf); !errors.Is(err, errUsage) {
		t.Fatalf("replay -h: %v, want the usage error", err)
	}
	return flagsFromUsage(t, "understudy replay", buf.String())
}

func backtestFlags(t *testing.T) map[string]bool {
	t.Helper()
	var buf bytes.Buffer
	if _, err := parseBacktest([]string{"-h"}, &buf); !errors.Is(err, errUsage) {
		t.Fatalf("backtest -h: %v, want the usage error", err)
	}
	return flagsFromUsage(t, "understudy backtest", buf.String())
}

// envName is the environment variable ff reads for a flag under prefix.
func envName(prefix, flag string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// doc is one Markdown file of the documentation.
type doc struct {
	path string // relative to the repository root
	text string
}

// docs returns README.md and every docs/*.md.
func docs(t *testing.T) []doc {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append([]string{filepath.Join(repoRoot, "README.md")}, paths...)
	var out []doc
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repoRoot, p)
		out = append(out, doc{path: filepath.ToSlash(rel), text: string(b)})
	}
	return out
}

func readDoc(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the part of text from the line equal to heading up to
// the next heading of the same or a higher level, and text without it.
func section(t *testing.T, text, heading string) (inside, outside string) {
	t.Helper()
	level := strings.Index(heading, " ")
	lines := strings.SplitAfter(text, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimRight(l, "\n") == heading {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("%s has no heading %q", operationsDoc, heading)
	}
	end := len(lines)
	for i := start + 1; i < len(lines); i++ {
		if h := headingLevel(lines[i]); h > 0 && h <= level {
			end = i
			break
		}
	}
	return strings.Join(lines[start:end], ""), strings.Join(lines[:start], "") + strings.Join(lines[end:], "")
}

// headingLevel is the level of a Markdown ATX heading line, or 0.
func headingLevel(line string) int {
	n := 0
	for n < len(line) && line[n] == '#' {
		n++
	}
	if n == 0 || n > 6 || n >= len(line) || line[n] != ' ' {
		return 0
	}
	return n
}

// lineOf returns the 1-based line of offset in text.
func lineOf(text string, offset int) int {
	return strings.Count(text[:offset], "\n") + 1
}

// TestDocsFlagsExist checks that every --flag the docs mention is a flag of
// `understudy serve`, or of `understudy replay` in the replay section of
// docs/operations.md, the one place that lists replay's flags.
func TestDocsFlagsExist(t *testing.T) {
	serve, replay, backtest := serveFlags(t), replayFlags(t), backtestFlags(t)
	// Outside the commands' own sections a flag may be serve's or
	// backtest's: the README shows both.
	either := map[string]bool{}
	for f := range serve {
		either[f] = true
	}
	for f := range backtest {
		either[f] = true
	}
	for _, d := range docs(t) {
		type part struct {
			text  string
			flags map[string]bool
			what  string
		}
		parts := []part{{d.text, either, "understudy serve or backtest"}}
		if d.path == operationsDoc {
			in, out := section(t, d.text, replayHeading)
			bt, rest := section(t, out, backtestHeading)
			parts = []part{{rest, serve, "understudy serve"}, {in, replay, "understudy replay"}, {bt, backtest, "understudy backtest"}}
		}
		for _, p := range parts {
			for _, m := range docFlag.FindAllStringSubmatchIndex(p.text, -1) {
				name := p.text[m[2]:m[3]]
				if !p.flags[name] {
					t.Errorf("%s mentions --%s, which is not a flag of %s", d.path, name, p.what)
				}
			}
		}
	}
}

// TestDocsEveryFlagDocumented checks that docs/operations.md lists every
// flag of serve, with its environment variable on the same line, and every
// flag of replay, each in its own section.
func TestDocsEveryFlagDocumented(t *testing.T) {
	text := readDoc(t, operationsDoc)
	serveSection, _ := section(t, text, serveHeading)
	replaySection, _ := section(t, text, replayHeading)
	backtestSection, _ := section(t, text, backtestHeading)
	for _, c := range []struct {
		what, section, envPrefix string
		flags                    map[string]bool
	}{
		{"understudy serve", serveSection, "UNDERSTUDY", serveFlags(t)},
		{"understudy replay", replaySection, "", replayFlags(t)},
		{"understudy backtest", backtestSection, "", backtestFlags(t)},
	} {
		for _, name := range sortedKeys(c.flags) {
			var row string
			for _, l := range strings.Split(c.section, "\n") {
				if strings.Contains(l, "`--"+name+"`") {
					row = l
					break
				}
			}
			switch {
			case row == "":
				t.Errorf("%s: the %s section does not document --%s", operationsDoc, c.what, name)
			case c.envPrefix != "" && !strings.Contains(row, "`"+envName(c.envPrefix, name)+"`"):
				t.Errorf("%s: the line of --%s does not give its environment variable %s: %s", operationsDoc, name, envName(c.envPrefix, name), row)
			}
		}
	}
}

// TestDocsEnvVars checks that every UNDERSTUDY_* variable the docs name is
// a flag's (UNDERSTUDY_ + the serve flag in upper snake case, or
// UNDERSTUDY_REPLAY_ + a replay flag), or a known variable that some file
// really reads.
func TestDocsEnvVars(t *testing.T) {
	known := map[string]bool{"UNDERSTUDY_REPLAY_": true, "UNDERSTUDY_BACKTEST_": true} // the prefixes, as prefixes
	for f := range serveFlags(t) {
		known[envName("UNDERSTUDY", f)] = true
	}
	for f := range replayFlags(t) {
		known[envName("UNDERSTUDY_REPLAY", f)] = true
	}
	for f := range backtestFlags(t) {
		known[envName("UNDERSTUDY_BACKTEST", f)] = true
	}
	for name, file := range nonFlagEnv {
		if !regexp.MustCompile(`\b` + name + `\b`).MatchString(readDoc(t, file)) {
			t.Errorf("%s no longer reads %s; remove it from nonFlagEnv and the docs", file, name)
		}
		known[name] = true
	}
	for _, d := range docs(t) {
		for _, m := range docEnv.FindAllStringIndex(d.text, -1) {
			if name := d.text[m[0]:m[1]]; !known[name] {
				t.Errorf("%s:%d names %s, which is no flag's environment variable", d.path, lineOf(d.text, m[0]), name)
			}
		}
	}
}

// TestDocsLinks checks that every relative link in the docs leads to a file
// that exists and, with a #fragment, to a heading of that file.
func TestDocsLinks(t *testing.T) {
	anchors := map[string]map[string]bool{}
	anchorsOf := func(rel string) map[string]bool {
		if a, ok := anchors[rel]; ok {
			return a
		}
		a := map[string]bool{}
		if strings.HasSuffix(rel, ".md") {
			seen := map[string]int{}
			for _, l := range prose(readDoc(t, rel)) {
				if headingLevel(l) > 0 {
					slug := headingSlug(strings.TrimLeft(l, "#"))
					if n := seen[slug]; n > 0 {
						a[slug+"-"+strconv.Itoa(n)] = true
					} else {
						a[slug] = true
					}
					seen[slug]++
				}
			}
		}
		anchors[rel] = a
		return a
	}
	for _, d := range docs(t) {
		for _, l := range prose(d.text) {
			for _, m := range docLink.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, frag, _ := strings.Cut(target, "#")
				rel := d.path
				if file != "" {
					rel = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(d.path), file)))
					if _, err := os.Stat(filepath.Join(repoRoot, rel)); err != nil {
						t.Errorf("%s links to %s, which does not exist", d.path, target)
						continue
					}
				}
				if frag != "" && !anchorsOf(rel)[frag] {
					t.Errorf("%s links to %s, but %s has no heading with the anchor #%s", d.path, target, rel, frag)
				}
			}
		}
	}
}

// TestDocsReadme checks that the README stays a user's page, and shows the
// commands CI's hook looks for.
func TestDocsReadme(t *testing.T) {
	text := readDoc(t, "README.md")
	if n := strings.Count(text, "\n"); n > maxReadmeLines {
		t.Errorf("README.md has %d lines; keep it to %d and move the rest into docs/", n, maxReadmeLines)
	}
	for _, cmd := range []string{"make run", "make test"} {
		if !strings.Contains(text, cmd) {
			t.Errorf("README.md does not show %q", cmd)
		}
	}
}

// prose returns the lines of a Markdown text outside fenced code blocks.
func prose(text string) []string {
	var out []string
	fenced := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			out = append(out, l)
		}
	}
	return out
}

// headingSlug is GitHub's anchor for a heading: lower case, without
// punctuation other than - and _, spaces turned into -.
func headingSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
