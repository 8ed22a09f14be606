package main

import (
	"fmt"
	"io"
	"runtime"
	"time"
)

// failures collects what went wrong across a run's measurements: none is
// allowed, and the first failure of each measurement is shown.
type failures struct {
	n       int
	samples []string
}

// add counts s's failures, under name.
func (f *failures) add(name string, s stats) {
	f.n += s.failures()
	if s.sample != "" {
		f.samples = append(f.samples, name+": "+s.sample)
	}
}

// err prints the first failure of each measurement that had one, and
// returns an error when anything failed.
func (f *failures) err(out io.Writer) error {
	if f.n == 0 {
		return nil
	}
	for _, s := range f.samples {
		fmt.Fprintln(out, "first failure —", s)
	}
	return fmt.Errorf("%d requests or transactions failed under load", f.n)
}

// report prints the main table: each endpoint beside bare Echo hello and
// its pgbench ceiling.
func report(out io.Writer, hello stats, results []result, cfg config, bench *pgbench, failed *failures) {
	fmt.Fprintf(out, "\n%d connections, %s per measurement; GOMAXPROCS %d on %d CPUs; pgbench -M extended -c %d -j %d as tokka_api\n\n",
		cfg.conns, cfg.duration, runtime.GOMAXPROCS(0), runtime.NumCPU(), bench.clients, bench.threads)
	fmt.Fprintf(out, "%-26s %9s %8s %8s %6s | %9s %8s %8s %6s %5s %5s | %9s %11s\n",
		"", "req/s", "p50", "p99", "fail", "pgbench", "p50", "p99", "fail", "stmts", "trips", "api/hello", "api/pgbench")
	fmt.Fprintf(out, "%-26s %9.0f %8s %8s %6d |\n", "bare Echo hello (ceiling)", hello.perSecond(), ms(hello.p50), ms(hello.p99), hello.failures())
	failed.add("bare Echo hello", hello)
	for _, r := range results {
		a := r.api
		failed.add(r.ep.name, a)
		fmt.Fprintf(out, "%-26s %9.0f %8s %8s %6d |", r.ep.name, a.perSecond(), ms(a.p50), ms(a.p99), a.failures())
		if r.ep.script == nil {
			fmt.Fprintf(out, " %9s %8s %8s %6s %5s %5d |", "—", "", "", "", "", r.ep.trips)
			fmt.Fprintf(out, " %9.2f %11s\n", ratio(a.perSecond(), hello.perSecond()), "—")
			continue
		}
		b := r.bench
		failed.add(r.ep.name+" (pgbench)", b)
		fmt.Fprintf(out, " %9.0f %8s %8s %6d %5d %5d |", b.perSecond(), ms(b.p50), ms(b.p99), b.failures(), r.ep.script.statements, r.ep.trips)
		fmt.Fprintf(out, " %9.2f %11.2f\n", ratio(a.perSecond(), hello.perSecond()), ratio(a.perSecond(), b.perSecond()))
	}
	fmt.Fprintln(out, "\nreq/s, p50, p99: the api at the same concurrency; pgbench: transactions/s replaying the statements the api ran")
	fmt.Fprintln(out, "for one request (captured), as tokka_api; stmts: statements in it (BEGIN and COMMIT included); trips: the api's")
	fmt.Fprintln(out, "round trips to PostgreSQL per request; fail: non-2xx answers and errors (none is allowed).")
}

// replicaRow is one endpoint on the primary alone and with the replica.
type replicaRow struct {
	ep               *endpoint
	primary, replica stats
}

// reportReplica prints the replica pass: each endpoint on the primary
// alone (from the main table) and with the replica, the ratio, and the
// transactions each server ran for the bench database meanwhile.
func reportReplica(out io.Writer, rows []replicaRow, ran transactions, where string, cfg config, failed *failures) {
	fmt.Fprintf(out, "\nreads on a streaming replica: the api with DATABASE_READ_URL, %d connections, %s per measurement\n%s\n\n",
		cfg.conns, cfg.duration, where)
	fmt.Fprintf(out, "%-26s %9s %8s %8s %6s | %9s %8s %8s %6s | %5s\n",
		"", "primary", "p50", "p99", "fail", "+replica", "p50", "p99", "fail", "ratio")
	for _, r := range rows {
		p, s := r.primary, r.replica
		failed.add(r.ep.name+" (with the replica)", s)
		fmt.Fprintf(out, "%-26s %9.0f %8s %8s %6d | %9.0f %8s %8s %6d | %5.2f\n", r.ep.name,
			p.perSecond(), ms(p.p50), ms(p.p99), p.failures(), s.perSecond(), ms(s.p50), ms(s.p99), s.failures(),
			ratio(s.perSecond(), p.perSecond()))
	}
	fmt.Fprintf(out, "\nprimary: req/s, p50, p99 of the table above (the api on the primary alone); +replica: the same endpoint with\n")
	fmt.Fprintf(out, "the api's reads on the replica (a pool of DATABASE_MAX_CONNS on each server); ratio: +replica req/s ÷ primary's.\n")
	fmt.Fprintf(out, "Meanwhile the bench database ran %d transactions on the replica and %d on the primary (warm-ups included;\n",
		ran.replica, ran.primary)
	fmt.Fprintf(out, "the expensive reads' rate-limit hits stay on the primary). Endpoints that run no SQL are left out.\n")
	if cfg.replica {
		fmt.Fprintf(out, "Both servers run on this machine's %d CPUs beside the api and the load generator: a replica here takes reads\n", runtime.NumCPU())
		fmt.Fprintf(out, "off the primary but adds no cores, so read it as a check that reads move, not as the gain; -replica-url\n")
		fmt.Fprintf(out, "measures a replica on its own machine.\n")
	}
}

// poolRow is one endpoint with the api's pool of a given size.
type poolRow struct {
	ep   *endpoint
	pool int
	api  stats
}

// reportPools prints the pool pass, grouped by endpoint in the order of
// -max-conns, with each row's req/s against the first pool size's.
func reportPools(out io.Writer, rows []poolRow, defaultPool int, cfg config, failed *failures) {
	fmt.Fprintf(out, "\nthe api's pool (DATABASE_MAX_CONNS; default %d), %d connections, %s per measurement\n\n",
		defaultPool, cfg.conns, cfg.duration)
	fmt.Fprintf(out, "%-26s %5s %9s %8s %8s %6s %8s\n", "", "pool", "req/s", "p50", "p99", "fail", "÷ first")
	first := map[*endpoint]float64{}
	for _, ep := range uniqueEndpoints(rows) {
		name := ep.name
		for _, r := range rows {
			if r.ep != ep {
				continue
			}
			a := r.api
			failed.add(fmt.Sprintf("%s (pool %d)", ep.name, r.pool), a)
			if _, ok := first[ep]; !ok {
				first[ep] = a.perSecond()
			}
			fmt.Fprintf(out, "%-26s %5d %9.0f %8s %8s %6d %8.2f\n", name, r.pool, a.perSecond(), ms(a.p50), ms(a.p99), a.failures(),
				ratio(a.perSecond(), first[ep]))
			name = ""
		}
	}
	fmt.Fprintln(out, "\npool: the api's DATABASE_MAX_CONNS (the api restarted for each); ÷ first: req/s against the first pool size's.")
	fmt.Fprintln(out, "On the primary alone, without DATABASE_READ_URL; endpoints that run no SQL are left out.")
}

// uniqueEndpoints is the endpoints of rows, each once, in order.
func uniqueEndpoints(rows []poolRow) []*endpoint {
	var eps []*endpoint
	seen := map[*endpoint]bool{}
	for _, r := range rows {
		if !seen[r.ep] {
			seen[r.ep] = true
			eps = append(eps, r.ep)
		}
	}
	return eps
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
