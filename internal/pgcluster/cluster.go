// Package pgcluster starts and stops throwaway PostgreSQL clusters from the
// server binaries installed on this machine, for tests and `civicbase dev`.
package pgcluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options configures a throwaway cluster. The zero value is usable.
type Options struct {
	// Port is the TCP port on 127.0.0.1. Zero picks a free port.
	Port int
	// Fsync keeps fsync on. Tests leave it off for speed; `civicbase dev`
	// turns it on so a kept cluster survives a machine crash.
	Fsync bool
	// Dir is the data folder's parent. Empty means a new temporary folder.
	Dir string
	// WALLevel is the wal_level setting. Default "logical"; tests of the
	// start-up checks set "replica".
	WALLevel string
}

// Cluster is a running PostgreSQL server with wal_level=logical.
type Cluster struct {
	// Root is the folder that holds the data folder, the socket and the log.
	Root string
	// Port is the TCP port on 127.0.0.1.
	Port int

	bin  string
	cred *syscall.Credential
}

// ErrNoBinaries is returned when initdb and pg_ctl cannot be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin; " +
	"install them, for example with `apt-get install postgresql` on Debian or `brew install postgresql` on macOS")

// FindBinaries returns the folder that holds initdb and pg_ctl: PATH first,
// then the newest /usr/lib/postgresql/<version>/bin.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start creates a cluster with initdb and starts it with pg_ctl. When the
// process runs as root, the server runs as the `postgres` user (or `nobody`),
// because initdb refuses to run as root.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, Port: opts.Port}
	if c.Port == 0 {
		if c.Port, err = freePort(); err != nil {
			return nil, err
		}
	}
	if c.cred, err = serverCredential(); err != nil {
		return nil, err
	}
	if c.Root, err = makeRoot(opts.Dir, c.cred); err != nil {
		return nil, err
	}

	initdb := []string{"-D", c.DataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"}
	if !opts.Fsync {
		initdb = append(initdb, "--no-sync")
	}
	if out, err := c.run(ctx, "initdb", initdb...); err != nil {
		os.RemoveAll(c.Root)
		return nil, fmt.Errorf("running initdb in %s: %w\n%s", c.DataDir(), err, out)
	}
	if err := c.writeConfig(opts.Fsync, cmp.Or(opts.WALLevel, "logical")); err != nil {
		os.RemoveAll(c.Root)
		return nil, err
	}
	if err := c.StartServer(ctx); err != nil {
		os.RemoveAll(c.Root)
		return nil, err
	}
	return c, nil
}

// Attach returns a handle on a cluster whose folder was kept by an earlier
// Start, for example after `civicbase dev --keep`.
func Attach(root string, port int) (*Cluster, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	return &Cluster{Root: root, Port: port, bin: bin, cred: cred}, nil
}

// DataDir is the cluster's data folder.
func (c *Cluster) DataDir() string { return filepath.Join(c.Root, "data") }

// LogFile is the server log.
func (c *Cluster) LogFile() string { return filepath.Join(c.Root, "postgres.log") }

// URL returns a connection URL for database db as user postgres over TCP.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

func (c *Cluster) writeConfig(fsync bool, walLevel string) error {
	onOff := map[bool]string{true: "on", false: "off"}
	conf := strings.Join([]string{
		"wal_level = " + walLevel,
		"max_replication_slots = 64",
		"max_wal_senders = 64",
		"max_connections = 300",
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", c.Port),
		fmt.Sprintf("unix_socket_directories = '%s'", c.Root),
		"fsync = " + onOff[fsync],
		// synchronous_commit stays on. With it off, the walsender sends a
		// commit only after the WAL writer's next round (wal_writer_delay,
		// 200ms by default), which adds that delay to every event's latency.
		"full_page_writes = " + onOff[fsync],
		"shared_buffers = 128MB",
		"logical_decoding_work_mem = 64MB",
		"",
	}, "\n")
	f, err := os.OpenFile(filepath.Join(c.DataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening postgresql.conf: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n# civicbase throwaway cluster\n" + conf); err != nil {
		return fmt.Errorf("writing postgresql.conf: %w", err)
	}
	return nil
}

// StartServer starts the server of an existing cluster and waits until it
// accepts connections.
func (c *Cluster) StartServer(ctx context.Context) error {
	out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", c.DataDir(), "-l", c.LogFile())
	if err != nil {
		logTail, _ := os.ReadFile(c.LogFile())
		return fmt.Errorf("starting postgres in %s: %w\n%s\n%s", c.DataDir(), err, out, tail(logTail, 2000))
	}
	return nil
}

// StopServer stops the server with the given pg_ctl mode (fast or immediate)
// and keeps the data folder.
func (c *Cluster) StopServer(ctx context.Context, mode string) error {
	if mode == "" {
		mode = "fast"
	}
	out, err := c.run(ctx, "pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", c.DataDir())
	if err != nil {
		return fmt.Errorf("stopping postgres in %s: %w\n%s", c.DataDir(), err, out)
	}
	return nil
}

// Remove stops the server and deletes the cluster's folder.
func (c *Cluster) Remove(ctx context.Context) error {
	stopErr := c.StopServer(ctx, "fast")
	if stopErr != nil {
		stopErr = c.StopServer(ctx, "immediate")
	}
	if err := os.RemoveAll(c.Root); err != nil {
		return fmt.Errorf("removing %s: %w", c.Root, err)
	}
	return stopErr
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.Root
	// The server must outlive a Ctrl-C sent to our process group, so that
	// shutdown can stop it in order instead of killing it mid-write.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.CombinedOutput()
}

func makeRoot(parent string, cred *syscall.Credential) (string, error) {
	root, err := os.MkdirTemp(parent, "civicbase-pg-")
	if err != nil {
		return "", fmt.Errorf("creating cluster folder: %w", err)
	}
	if cred != nil {
		if err := os.Chown(root, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(root)
			return "", fmt.Errorf("handing %s to uid %d: %w", root, cred.Uid, err)
		}
	}
	return root, nil
}

// serverCredential returns nil unless the process runs as root. As root it
// returns the uid and gid of the postgres user, or of the nobody user when
// postgres does not exist.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("initdb cannot run as root, and neither the postgres nor the nobody user exists to run it instead; run civicbase as an ordinary user")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitReady polls until the server accepts TCP connections or ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for postgres on port %d: %w", c.Port, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
