package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/internal/pgcluster"
)

// demoSchema creates the users, user_profiles and projects tables with a few
// seed rows.
//
//go:embed testdata/demo.sql
var demoSchema string

// demoConfig is the CIVICBASE_CONFIG that watches the demo tables.
//
//go:embed testdata/demo.yaml
var demoConfig []byte

const devDatabase = "civicbase_dev"

// devOptions holds the flags of `civicbase dev`.
type devOptions struct {
	keep   bool
	port   int
	pgPort int
}

// devSession is the state that `civicbase dev` sets up and prints.
type devSession struct {
	cluster    *pgcluster.Cluster
	dbURL      string
	addr       string
	apiURL     string
	token      string
	configPath string
	keep       bool
}

// devCommand starts a throwaway Postgres cluster, loads the demo schema, runs
// the service against it until ctx is canceled, and then removes the cluster
// unless --keep is given.
func devCommand(ctx context.Context, log *slog.Logger, args []string) error {
	opts, err := parseDevFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.port))
	if err := checkPortFree(addr); err != nil {
		return err
	}

	log.InfoContext(ctx, "starting throwaway postgres")
	// Start runs initdb and pg_ctl under its context, so it gets one that
	// Ctrl-C does not cancel, because a pg_ctl killed mid-start could leave a
	// server running that nothing stops. finishDev stops it instead.
	cluster, err := pgcluster.Start(context.WithoutCancel(ctx), pgcluster.Options{Port: opts.pgPort, Fsync: true})
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "postgres started", "dir", cluster.Root, "port", cluster.Port)

	session := devSession{cluster: cluster, addr: addr, apiURL: "http://" + addr, keep: opts.keep}
	defer finishDev(context.WithoutCancel(ctx), log, &session, opts.keep)

	if session.dbURL, err = loadDemoDatabase(ctx, cluster); err != nil {
		return err
	}
	if session.token, err = randomToken(); err != nil {
		return err
	}
	session.configPath = filepath.Join(cluster.Root, "demo.yaml")
	if err := os.WriteFile(session.configPath, demoConfig, 0o644); err != nil {
		return fmt.Errorf("writing demo config: %w", err)
	}

	cfg, err := config.Load(devGetenv(map[string]string{
		"DATABASE_URL":          session.dbURL,
		"CIVICBASE_ADMIN_TOKEN": session.token,
		"CIVICBASE_ADDR":        addr,
		"CIVICBASE_DEV":         "true",
		"CIVICBASE_CONFIG":      session.configPath,
	}))
	if err != nil {
		return fmt.Errorf("loading demo configuration: %w", err)
	}
	return serve(ctx, cfg, log, func() { printDevBanner(os.Stdout, session) })
}

func parseDevFlags(args []string, output io.Writer) (devOptions, error) {
	var opts devOptions
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintf(output, "Usage: civicbase dev [--keep] [--port N] [--pg-port N]\n\n"+
			"Starts a throwaway Postgres with the demo schema and runs the service against it.\n\n")
		fs.PrintDefaults()
	}
	fs.BoolVar(&opts.keep, "keep", false, "keep the cluster folder after Ctrl-C (the server is stopped), so it can be started again")
	fs.IntVar(&opts.port, "port", 8080, "HTTP port of the service on 127.0.0.1")
	fs.IntVar(&opts.pgPort, "pg-port", 0, "TCP port of the throwaway Postgres on 127.0.0.1; 0 picks a free port")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("dev takes no arguments, got %q; run `civicbase dev -h` for the flags", fs.Args())
	}
	if opts.port < 1 || opts.port > 65535 {
		return opts, fmt.Errorf("--port %d is out of range; use 1 to 65535", opts.port)
	}
	if opts.pgPort < 0 || opts.pgPort > 65535 {
		return opts, fmt.Errorf("--pg-port %d is out of range; use 1 to 65535, or 0 for a free port", opts.pgPort)
	}
	return opts, nil
}

// checkPortFree fails early when the HTTP port is taken, before initdb spends
// seconds on a cluster that the service could not use.
func checkPortFree(addr string) error {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w; pick another HTTP port with --port", addr, err)
	}
	return listener.Close()
}

// loadDemoDatabase creates the dev database and loads the demo schema into
// it. It returns the database's URL.
func loadDemoDatabase(ctx context.Context, cluster *pgcluster.Cluster) (string, error) {
	admin, err := pgx.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connecting to the throwaway postgres: %w", err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+devDatabase); err != nil {
		return "", fmt.Errorf("creating database %s: %w", devDatabase, err)
	}

	dbURL := cluster.URL(devDatabase)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", fmt.Errorf("connecting to database %s: %w", devDatabase, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Without arguments, Exec uses the simple query protocol, which accepts
	// the file's several statements in one call.
	if _, err := conn.Exec(ctx, demoSchema); err != nil {
		return "", fmt.Errorf("loading testdata/demo.sql: %w", err)
	}
	return dbURL, nil
}

// randomToken returns 32 random bytes as hex, for the admin token.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating admin token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// devGetenv returns a getenv function that reads fixed first and falls back
// to the process environment.
func devGetenv(fixed map[string]string) func(string) string {
	return func(key string) string {
		if v, ok := fixed[key]; ok {
			return v
		}
		return os.Getenv(key)
	}
}

// finishDev stops the cluster after the service has returned. It removes the
// cluster folder, or with keep stops the server and prints how to reuse it.
func finishDev(ctx context.Context, log *slog.Logger, s *devSession, keep bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if !keep {
		if err := s.cluster.Remove(ctx); err != nil {
			log.ErrorContext(ctx, "removing throwaway postgres", "dir", s.cluster.Root, "err", err)
			fmt.Printf("\nCould not remove %s completely: %v\nDelete the folder by hand.\n", s.cluster.Root, err)
			return
		}
		fmt.Printf("\nStopped postgres and removed %s.\n", s.cluster.Root)
		return
	}
	if err := s.cluster.StopServer(ctx, "fast"); err != nil {
		log.ErrorContext(ctx, "stopping throwaway postgres", "dir", s.cluster.Root, "err", err)
	}
	printKeptCluster(os.Stdout, s)
}

// printDevBanner writes the admin token, the API URL and commands to try.
func printDevBanner(w io.Writer, s devSession) {
	psql, found := findPsql()
	fmt.Fprintf(w, "\ncivicbase dev is running.\n\n")
	fmt.Fprintf(w, "  API          %s\n", s.apiURL)
	fmt.Fprintf(w, "  Live page    %s/ (paste the admin token)\n", s.apiURL)
	fmt.Fprintf(w, "  Admin token  %s\n", s.token)
	fmt.Fprintf(w, "  Database     %s\n", s.dbURL)
	if s.keep {
		fmt.Fprintf(w, "  Cluster      %s (kept after Ctrl-C because of --keep)\n\n", s.cluster.Root)
	} else {
		fmt.Fprintf(w, "  Cluster      %s (removed on Ctrl-C; `go run . dev --keep` keeps it)\n\n", s.cluster.Root)
	}

	fmt.Fprintf(w, "Insert a user (events data.created and user.created):\n\n")
	fmt.Fprintf(w, "  %s '%s' -c \"INSERT INTO users (email, name) VALUES ('ada@example.com', 'Ada Lovelace')\"\n\n", psql, s.dbURL)
	fmt.Fprintf(w, "Start a project (events data.updated and project.status_changed):\n\n")
	fmt.Fprintf(w, "  %s '%s' -c \"UPDATE projects SET status = 'active' WHERE name = 'Bombe rebuild'\"\n\n", psql, s.dbURL)
	if !found {
		fmt.Fprintf(w, "psql was not found; install the PostgreSQL client, for example with "+
			"`apt-get install postgresql-client` on Debian or `brew install libpq` on macOS.\n\n")
	}
	fmt.Fprintf(w, "List the stored events:\n\n")
	fmt.Fprintf(w, "  curl -s -H \"Authorization: Bearer %s\" %s/events\n\n", s.token, s.apiURL)
	fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
}

// findPsql returns the psql next to the server binaries, so its version
// matches the server, or else the one on PATH. found is false when neither
// exists.
func findPsql() (path string, found bool) {
	if dir, err := pgcluster.FindBinaries(); err == nil {
		candidates := []string{filepath.Join(dir, "psql")}
		// initdb on PATH may be a symlink into the version's own folder,
		// such as /usr/lib/postgresql/15/bin, which also contains psql.
		if target, err := filepath.EvalSymlinks(filepath.Join(dir, "initdb")); err == nil {
			candidates = append(candidates, filepath.Join(filepath.Dir(target), "psql"))
		}
		for _, p := range candidates {
			if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
				return p, true
			}
		}
	}
	if p, err := exec.LookPath("psql"); err == nil {
		return p, true
	}
	return "psql", false
}

// printKeptCluster writes where the kept cluster is and the commands that
// start it and the service again.
func printKeptCluster(w io.Writer, s *devSession) {
	pgCtl := "pg_ctl"
	if dir, err := pgcluster.FindBinaries(); err == nil {
		pgCtl = filepath.Join(dir, "pg_ctl")
	}
	fmt.Fprintf(w, "\nStopped postgres and kept the cluster in %s.\n", s.cluster.Root)
	fmt.Fprintf(w, "Start it and the service again with:\n\n")
	fmt.Fprintf(w, "  %s%s start -w -D %s -l %s\n", runAsOwnerPrefix(s.cluster.DataDir()), pgCtl, s.cluster.DataDir(), s.cluster.LogFile())
	// The fields are empty when the demo setup was interrupted before them.
	if s.configPath != "" {
		fmt.Fprintf(w, "  DATABASE_URL='%s' CIVICBASE_ADMIN_TOKEN=%s CIVICBASE_ADDR=%s CIVICBASE_DEV=true CIVICBASE_CONFIG=%s go run . serve\n",
			s.dbURL, s.token, s.addr, s.configPath)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Stop it with `%s%s stop -D %s`, and delete the folder when done.\n",
		runAsOwnerPrefix(s.cluster.DataDir()), pgCtl, s.cluster.DataDir())
}

// runAsOwnerPrefix returns "runuser -u NAME -- " when we run as root and dir
// belongs to another user, because pg_ctl cannot be run as root.
func runAsOwnerPrefix(dir string) string {
	if os.Geteuid() != 0 {
		return ""
	}
	info, err := os.Stat(dir)
	if err != nil {
		return ""
	}
	stat, ok := info.Sys().(*syscall.Stat_t)
	if !ok || stat.Uid == 0 {
		return ""
	}
	owner, err := user.LookupId(strconv.FormatUint(uint64(stat.Uid), 10))
	if err != nil {
		return ""
	}
	return "runuser -u " + owner.Username + " -- "
}
