package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
)

// loadClient sends one prebuilt POST over keep-alive connections of its
// own, parsing answers with net/http's reader. It costs far less CPU per
// request than net/http's Client, which runs two goroutines per connection
// and hands every request between them; on a 2-core machine the load
// generator shares the server's CPU, so the less it takes, the more the
// figures say about the server. Both servers compared get the same client.
type loadClient struct {
	addr string
	req  []byte
	idle chan *loadConn
}

type loadConn struct {
	net.Conn
	r *bufio.Reader
}

func newLoadClient(rawURL string, body []byte) (*loadClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", u.RequestURI(), u.Host, len(body))
	return &loadClient{addr: u.Host, req: append([]byte(head), body...), idle: make(chan *loadConn, 1024)}, nil
}

func (lc *loadClient) conn() (*loadConn, error) {
	select {
	case c := <-lc.idle:
		return c, nil
	default:
	}
	c, err := net.Dial("tcp", lc.addr)
	if err != nil {
		return nil, err
	}
	return &loadConn{Conn: c, r: bufio.NewReaderSize(c, 16<<10)}, nil
}

// do sends the request once and reads the whole answer.
func (lc *loadClient) do() error {
	c, err := lc.conn()
	if err != nil {
		return err
	}
	if _, err := c.Write(lc.req); err != nil {
		c.Close()
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.Close()
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.Close()
	} else {
		select {
		case lc.idle <- c:
		default:
			c.Close()
		}
	}
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func (lc *loadClient) close() {
	for {
		select {
		case c := <-lc.idle:
			c.Close()
		default:
			return
		}
	}
}
