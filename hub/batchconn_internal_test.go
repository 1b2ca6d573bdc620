package hub

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tcpPair returns both ends of a loopback TCP connection, the server end
// wrapped by b.
func tcpPair(t *testing.T, b *batcher) (server net.Conn, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	raw := <-accepted
	require.NotNil(t, raw)
	server = b.wrap(raw)
	_, ok := server.(*batchConn)
	require.True(t, ok, "a TCP connection is batched")
	t.Cleanup(func() {
		server.Close()
		client.Close()
	})
	return server, client
}

func TestBatchConnKeepsOrderThroughFullSockets(t *testing.T) {
	b := newBatcher(4 << 10)
	defer b.stop()
	server, client := tcpPair(t, b)

	// Frames of many sizes, several times the socket buffers, so some
	// flushes are partial and go through drain.
	var want bytes.Buffer
	frames := make([][]byte, 0, 4000)
	for i := range 4000 {
		f := bytes.Repeat([]byte{byte('a' + i%26)}, 1+(i*7919)%9000)
		frames = append(frames, f)
		want.Write(f)
	}
	got := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		chunk := make([]byte, 1500)
		for buf.Len() < want.Len() {
			// Read slowly at first, so the sender's socket fills.
			if buf.Len() < want.Len()/4 {
				time.Sleep(time.Millisecond)
			}
			n, err := client.Read(chunk)
			buf.Write(chunk[:n])
			if err != nil {
				break
			}
		}
		got <- buf.Bytes()
	}()
	require.NoError(t, server.SetWriteDeadline(time.Now().Add(30*time.Second)))
	for _, f := range frames {
		n, err := server.Write(f)
		require.NoError(t, err)
		require.Equal(t, len(f), n)
	}
	select {
	case g := <-got:
		require.Equal(t, want.Len(), len(g))
		require.True(t, bytes.Equal(want.Bytes(), g), "bytes arrived out of order or changed")
	case <-time.After(60 * time.Second):
		t.Fatal("the reader did not get every byte")
	}
	require.Greater(t, b.syscalls.Load(), int64(0))
}

func TestBatchConnWriteWaitsForRoomUntilDeadline(t *testing.T) {
	b := newBatcher(4 << 10)
	defer b.stop()
	server, _ := tcpPair(t, b)

	// The client never reads: once the kernel's buffers and the batch
	// buffer are full, Write waits and fails at the deadline.
	require.NoError(t, server.SetWriteDeadline(time.Now().Add(500*time.Millisecond)))
	frame := bytes.Repeat([]byte("x"), 1024)
	var err error
	for range 1 << 16 {
		if _, err = server.Write(frame); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "a deadline error is a net timeout, as gorilla expects")
}

func TestBatchConnCloseSendsBufferedBytes(t *testing.T) {
	b := newBatcher(batchLimit)
	defer b.stop()
	server, client := tcpPair(t, b)

	_, err := server.Write([]byte("last frame"))
	require.NoError(t, err)
	require.NoError(t, server.Close())
	require.ErrorIs(t, server.Close(), net.ErrClosed)
	_, err = server.Write([]byte("after close"))
	require.ErrorIs(t, err, net.ErrClosed)

	require.NoError(t, client.SetReadDeadline(time.Now().Add(10*time.Second)))
	got, err := io.ReadAll(client)
	require.NoError(t, err)
	require.Equal(t, "last frame", string(got))
}

func TestBatchConnWriteFailsAfterPeerCloses(t *testing.T) {
	b := newBatcher(batchLimit)
	defer b.stop()
	server, client := tcpPair(t, b)
	require.NoError(t, client.Close())

	// The first writes may be buffered before the reset arrives; a later
	// one returns the error.
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = server.Write([]byte("frame"))
		time.Sleep(time.Millisecond)
	}
	require.Error(t, err)
}
