// Command mutatereport summarises the gremlins results scripts/mutate
// collects: per target the killed and lived mutants, the efficacy and the
// wall time, a total, and every mutant that lived, each either explained by a
// line of scripts/mutate.equivalents or marked UNEXPLAINED. It exits 1 when
// the total efficacy is below -min or a lived mutant is unexplained, and 2
// when its input cannot be read.
//
//	mutatereport -min 90 -equivalents scripts/mutate.equivalents \
//	    -src ROOT TARGET=RESULT.json@SECONDS ...
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// result is the part of gremlins' -o output read here.
type result struct {
	Files []struct {
		Name      string `json:"file_name"`
		Mutations []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Line   int    `json:"line"`
			Column int    `json:"column"`
		} `json:"mutations"`
	} `json:"files"`
}

// mutant is one lived mutant, located by file, the text of its line and its
// column within that text (indentation not counted), which survive edits
// elsewhere in the file (line numbers do not).
type mutant struct {
	file, kind, code string
	line, col        int
}

func (m mutant) key() string {
	return m.file + " | " + strconv.Itoa(m.col) + " | " + m.kind + " | " + m.code
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mutatereport:", err)
		if _, ok := err.(failed); ok {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

// failed is a run that worked but whose figures miss the bar.
type failed string

func (f failed) Error() string { return string(f) }

func run(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("mutatereport", flag.ContinueOnError)
	minEff := fs.Float64("min", 90, "least total efficacy in percent")
	eqPath := fs.String("equivalents", "", "file of explained survivors")
	src := fs.String("src", ".", "root of the tree that was mutated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	explained, err := readEquivalents(*eqPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%-24s %7s %6s %10s %11s %9s %6s\n", "target", "killed", "lived", "timed out", "not viable", "efficacy", "wall")
	var killed, lived int
	var survivors []mutant
	for _, arg := range fs.Args() {
		t, err := readTarget(arg, *src)
		if err != nil {
			return err
		}
		killed, lived = killed+t.killed, lived+t.lived
		survivors = append(survivors, t.survivors...)
		fmt.Fprintf(w, "%-24s %7d %6d %10d %11d %8s%% %5ss\n", t.name, t.killed, t.lived, t.timedOut, t.notViable,
			efficacy(t.killed, t.lived), t.seconds)
	}
	total := efficacy(killed, lived)
	fmt.Fprintf(w, "%-24s %7d %6d %10s %11s %8s%%\n", "total", killed, lived, "", "", total)
	unexplained := printSurvivors(w, survivors, explained)
	t, _ := strconv.ParseFloat(total, 64)
	switch {
	case t < *minEff:
		return failed(fmt.Sprintf("total efficacy %s%% is below %.0f%%", total, *minEff))
	case unexplained > 0:
		return failed(fmt.Sprintf("%d lived mutant(s) are neither killed nor explained", unexplained))
	}
	return nil
}

// target is one target's tally and the mutants that lived in it.
type target struct {
	name, seconds                      string
	killed, lived, timedOut, notViable int
	survivors                          []mutant
}

// readTarget reads the gremlins result named by arg (TARGET=RESULT.json@SECONDS);
// the lived mutants' lines are read from the tree at src.
func readTarget(arg, src string) (target, error) {
	name, rest, ok1 := strings.Cut(arg, "=")
	file, secs, ok2 := strings.Cut(rest, "@")
	if !ok1 || !ok2 {
		return target{}, fmt.Errorf("argument %q is not TARGET=RESULT.json@SECONDS", arg)
	}
	var r result
	raw, err := os.ReadFile(file)
	if err != nil {
		return target{}, err
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return target{}, fmt.Errorf("%s: %w", file, err)
	}
	t := target{name: name, seconds: secs}
	dir := strings.SplitN(name, ":", 2)[0]
	for _, f := range r.Files {
		for _, m := range f.Mutations {
			switch m.Status {
			case "KILLED":
				t.killed++
			case "LIVED":
				t.lived++
				name := path.Join(dir, filepath.ToSlash(f.Name))
				code, indent := sourceLine(filepath.Join(src, name), m.Line)
				t.survivors = append(t.survivors, mutant{file: name, kind: m.Type, line: m.Line, col: m.Column - indent,
					code: code})
			case "TIMED OUT":
				t.timedOut++
			case "NOT VIABLE":
				t.notViable++
			}
		}
	}
	return t, nil
}

// printSurvivors lists the lived mutants by place, each with its
// explanation or marked UNEXPLAINED, and returns how many are unexplained.
func printSurvivors(w io.Writer, survivors []mutant, explained map[string]string) int {
	sort.Slice(survivors, func(i, j int) bool {
		if survivors[i].file != survivors[j].file {
			return survivors[i].file < survivors[j].file
		}
		return survivors[i].line < survivors[j].line || survivors[i].line == survivors[j].line && survivors[i].col < survivors[j].col
	})
	unexplained := 0
	if len(survivors) > 0 {
		fmt.Fprintln(w, "\nlived:")
	}
	for _, m := range survivors {
		reason, ok := explained[m.key()]
		if !ok {
			unexplained++
			reason = "UNEXPLAINED: kill it with a test, or add to scripts/mutate.equivalents:\n      " + m.key() + " | <why it is equivalent>"
		}
		fmt.Fprintf(w, "  %s:%d:%d %s  %s\n      %s\n", m.file, m.line, m.col, m.kind, m.code, reason)
	}
	return unexplained
}

func efficacy(killed, lived int) string {
	if killed+lived == 0 {
		return "100.00"
	}
	return strconv.FormatFloat(100*float64(killed)/float64(killed+lived), 'f', 2, 64)
}

// readEquivalents reads "file | column | MUTATOR | code | reason" lines;
// blank lines and lines starting with # are comments.
func readEquivalents(name string) (map[string]string, error) {
	out := map[string]string{}
	if name == "" {
		return out, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, " | ", 5)
		if len(parts) != 5 {
			return nil, fmt.Errorf("%s:%d: want file | column | MUTATOR | code | reason", name, n)
		}
		m := mutant{file: parts[0], kind: parts[2], code: parts[3]}
		if m.col, err = strconv.Atoi(parts[1]); err != nil {
			return nil, fmt.Errorf("%s:%d: column: %w", name, n, err)
		}
		out[m.key()] = parts[4]
	}
	return out, sc.Err()
}

// sourceLine returns line n of file without surrounding white space, and
// the width of the indentation it had; "" when it cannot be read.
func sourceLine(file string, n int) (string, int) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", 0
	}
	lines := strings.Split(string(raw), "\n")
	if n < 1 || n > len(lines) {
		return "", 0
	}
	l := strings.TrimRight(lines[n-1], " \t\r")
	code := strings.TrimLeft(l, " \t")
	return code, len(l) - len(code)
}
