// Package awsapi runs the AWS side of tests: moto (the Python AWS emulator) on 127.0.0.1, and
// a fault-injecting proxy in front of it. Tests talk to them with the real aws-sdk-go-v2
// clients through the endpoint override; nothing leaves the machine.
package awsapi

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// Region is the region tests use; moto creates a default VPC with a subnet per zone there.
const Region = "us-east-1"

// Moto is a running moto server.
type Moto struct {
	// URL is the endpoint to give the SDK, e.g. http://127.0.0.1:40123.
	URL    string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan error
}

// StartMoto starts moto for one test (Launch) and stops it when the test ends, logging its
// output if the test failed. It fails the test when moto is not installed
// (test/tools/install-moto.sh installs it).
func StartMoto(t testing.TB) *Moto {
	t.Helper()
	kit.Heavy(t, "moto, the AWS emulator")
	m, err := Launch()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("moto output (access log left out):\n%s", m.Output())
		}
	})
	return m
}

// Launch starts moto on a free port of 127.0.0.1 and waits until it answers. The caller stops
// it; packages whose tests share one moto launch it in TestMain and Reset it per test.
func Launch() (*Moto, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("awsapi: finding a free port: %w", err)
	}
	m := &Moto{URL: "http://127.0.0.1:" + strconv.Itoa(port), out: &lockedBuffer{}, exited: make(chan error, 1)}
	m.cmd = exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	// moto reads AWS_* variables through botocore; the test's (see Env) are for the SDK.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			m.cmd.Env = append(m.cmd.Env, kv)
		}
	}
	// Its own process group, so that stopping it also stops anything it forks; killed with
	// the test binary if that dies first.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("awsapi: starting moto (python3 -m moto.server; run test/tools/install-moto.sh): %w", err)
	}
	go func() { m.exited <- m.cmd.Wait() }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-m.exited:
			m.exited <- err
			return nil, fmt.Errorf("awsapi: moto exited before answering (%v); is it installed? (test/tools/install-moto.sh)\n%s", err, m.Output())
		default:
		}
		if err := m.get("/moto-api/"); err == nil {
			return m, nil
		}
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("awsapi: moto did not answer on %s within a minute\n%s", m.URL, m.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills moto (its process group) and waits for it to exit.
func (m *Moto) Stop() {
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	err := <-m.exited
	m.exited <- err // Stop may be called again
}

// Reset drops every resource moto holds, as if it had just started.
func (m *Moto) Reset(t testing.TB) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, m.URL+"/moto-api/reset", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("awsapi: resetting moto: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("awsapi: resetting moto: %s", resp.Status)
	}
}

// Output is what moto printed, without its access log: tracebacks and warnings.
func (m *Moto) Output() string {
	var b strings.Builder
	for _, l := range strings.Split(m.out.String(), "\n") {
		if !strings.Contains(l, "] \"POST ") && !strings.Contains(l, "] \"GET ") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func (m *Moto) get(path string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(m.URL + path)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// freePort asks the kernel for a free port. Another process could take it before moto binds it;
// moto then exits and StartMoto says so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Env sets the environment the SDK's default credential chain reads, with dummy credentials
// moto accepts, and turns off the instance metadata lookup (there is none here).
func Env(t *testing.T) {
	kit.Heavy(t, "moto, the AWS emulator")
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", Region)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_PROFILE", "")
}

// lockedBuffer collects moto's output, written by exec's copying goroutine and read by tests.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
