package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// script is a pgbench custom script that replays the statements one request
// ran. Text values bound to parameters become pgbench variables (vars, for
// -D), so that pgbench -M extended sends them as parameters, as the api
// does; NULLs and binary values are written into the statement.
type script struct {
	text       string
	vars       []string // name=value
	statements int
}

func newScript(title string, stmts []statement) (script, error) {
	s := script{statements: len(stmts)}
	var b strings.Builder
	fmt.Fprintf(&b, "-- %s: the statements the api ran for one request, in order\n", title)
	for i, st := range stmts {
		if st.problem != "" {
			return script{}, fmt.Errorf("statement %d: %s", i+1, st.problem)
		}
		if err := pgbenchSafe(st.sql); err != nil {
			return script{}, fmt.Errorf("statement %d: %w", i+1, err)
		}
		seen := map[int]bool{}
		text, err := replaceParams(st.sql, func(n int) (string, error) {
			if n < 1 || n > len(st.params) {
				return "", fmt.Errorf("statement %d: $%d has no bound value", i+1, n)
			}
			p := st.params[n-1]
			switch {
			case p.null:
				return "NULL", nil
			case p.binary:
				return `'\x` + hex.EncodeToString(p.value) + `'::bytea`, nil
			}
			name := "s" + strconv.Itoa(i+1) + "p" + strconv.Itoa(n)
			if !seen[n] {
				seen[n] = true
				s.vars = append(s.vars, name+"="+string(p.value))
			}
			return ":" + name, nil
		})
		if err != nil {
			return script{}, err
		}
		text = strings.TrimRight(strings.TrimSpace(text), "; \t\n")
		// A statement that ends in a line comment needs its semicolon on
		// a line of its own.
		if strings.Contains(text[strings.LastIndexByte(text, '\n')+1:], "--") {
			text += "\n"
		}
		b.WriteString(text + ";\n")
	}
	s.text = b.String()
	return s, nil
}

// pgbenchSafe rejects SQL that pgbench would misread: it takes a single
// colon followed by a name character as a variable, even inside a string
// literal (casts, "::", are safe).
func pgbenchSafe(sql string) error {
	for i := 0; i < len(sql); i++ {
		if sql[i] != ':' {
			continue
		}
		j := i
		for j < len(sql) && sql[j] == ':' {
			j++
		}
		if j-i == 1 && j < len(sql) && isNameChar(sql[j]) {
			return fmt.Errorf("pgbench would take %q for a variable; the statement cannot be replayed", sql[i:min(j+12, len(sql))])
		}
		i = j - 1
	}
	return nil
}

func isNameChar(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// replaceParams replaces each parameter reference $n in sql by sub(n),
// leaving string literals, quoted identifiers, comments and dollar-quoted
// bodies alone.
func replaceParams(sql string, sub func(n int) (string, error)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(sql[i+1:], c)
			if end < 0 {
				b.WriteString(sql[i:])
				return b.String(), nil
			}
			b.WriteString(sql[i : i+end+2])
			i += end + 2
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			end := strings.IndexByte(sql[i:], '\n')
			if end < 0 {
				end = len(sql) - i
			}
			b.WriteString(sql[i : i+end])
			i += end
		case c == '$' && i+1 < len(sql) && sql[i+1] >= '0' && sql[i+1] <= '9' && (i == 0 || !isNameChar(sql[i-1])):
			j := i + 1
			for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			n, _ := strconv.Atoi(sql[i+1 : j])
			v, err := sub(n)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = j
		case c == '$' && (i == 0 || !isNameChar(sql[i-1])):
			// A dollar quote: $$ or $tag$, up to the same delimiter.
			j := i + 1
			for j < len(sql) && sql[j] != '$' && isNameChar(sql[j]) {
				j++
			}
			if j >= len(sql) || sql[j] != '$' {
				b.WriteByte(c)
				i++
				continue
			}
			tag := sql[i : j+1]
			end := strings.Index(sql[j+1:], tag)
			if end < 0 {
				b.WriteString(sql[i:])
				return b.String(), nil
			}
			stop := j + 1 + end + len(tag)
			b.WriteString(sql[i:stop])
			i = stop
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

// pgbench runs one script at a time against one database.
type pgbench struct {
	bin     string
	dbURL   string
	dir     string // where scripts and per-transaction logs go
	clients int
	threads int
	// connect is the longest time pgbench has taken to open all its
	// connections. -T counts it, so each run asks for that much longer;
	// on a busy machine it takes seconds.
	connect time.Duration
}

// run replays s with -M extended and measures it from pgbench's
// per-transaction log the way load measures HTTP: once every client is
// connected, warmup passes unmeasured, then only transactions started after
// it count, and the window ends with the last of them.
func (p *pgbench) run(ctx context.Context, name string, s script, warmup, d time.Duration) (stats, error) {
	file := filepath.Join(p.dir, name+".sql")
	if err := os.WriteFile(file, []byte(s.text), 0o600); err != nil {
		return stats{}, err
	}
	prefix := filepath.Join(p.dir, name+"-log")
	seconds := int(math.Ceil((p.connect + warmup + d).Seconds()))
	args := []string{"-n", "-M", "extended", "-f", file, "-c", strconv.Itoa(p.clients), "-j", strconv.Itoa(p.threads),
		"-T", strconv.Itoa(seconds), "-l", "--log-prefix", prefix}
	for _, v := range s.vars {
		args = append(args, "-D", v)
	}
	args = append(args, p.dbURL)
	cmd := exec.CommandContext(ctx, p.bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	begin := time.Now()
	runErr := cmd.Run()
	out, connected, err := readTransactionLogs(prefix, warmup)
	if err != nil && runErr == nil {
		return stats{}, err
	}
	if !connected.IsZero() {
		p.connect = max(p.connect, connected.Sub(begin))
	}
	if runErr != nil {
		out.errors++
		if out.sample == "" {
			out.sample = fmt.Sprintf("%s: %s", runErr, lastLines(stderr.String(), 3))
		}
	}
	return out, nil
}

// readTransactionLogs reads pgbench's -l logs (one file per thread; a line
// per transaction: client, transaction, latency µs, script, end time s and
// µs; failed transactions have "failed" for the latency). It returns stats
// for the transactions that started warmup or later after the last client
// began its first (when all were connected), and that moment.
func readTransactionLogs(prefix string, warmup time.Duration) (stats, time.Time, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return stats{}, time.Time{}, err
	}
	if len(files) == 0 {
		return stats{}, time.Time{}, errors.New("pgbench wrote no transaction log")
	}
	out := stats{statuses: map[int]int{}}
	type tx struct{ start, end int64 } // µs since the epoch
	var txs []tx
	firstStart := map[string]int64{} // by client
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return stats{}, time.Time{}, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 6 {
				continue
			}
			if fields[2] == "failed" {
				out.errors++
				if out.sample == "" {
					out.sample = "a transaction failed: " + sc.Text()
				}
				continue
			}
			us, err1 := strconv.ParseInt(fields[2], 10, 64)
			sec, err2 := strconv.ParseInt(fields[4], 10, 64)
			frac, err3 := strconv.ParseInt(fields[5], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			t := tx{end: sec*1_000_000 + frac}
			t.start = t.end - us
			txs = append(txs, t)
			if first, ok := firstStart[fields[0]]; !ok || t.start < first {
				firstStart[fields[0]] = t.start
			}
		}
		_ = fh.Close()
		if err := sc.Err(); err != nil {
			return stats{}, time.Time{}, err
		}
	}
	var connected int64
	for _, first := range firstStart {
		connected = max(connected, first)
	}
	from := connected + warmup.Microseconds()
	var lat []time.Duration
	last := from
	for _, t := range txs {
		if t.start >= from {
			lat = append(lat, time.Duration(t.end-t.start)*time.Microsecond)
			last = max(last, t.end)
		}
	}
	out.requests, out.elapsed = len(lat), time.Duration(last-from)*time.Microsecond
	out.p50, out.p99 = percentiles(lat)
	if connected == 0 {
		return out, time.Time{}, nil
	}
	return out, time.UnixMicro(connected), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], " | ")
}
