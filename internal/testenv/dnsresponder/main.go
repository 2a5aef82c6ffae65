// Command dnsresponder is a DNS server of integration tests' own: it runs in
// a container of the test, answers every A query over UDP with one fixed
// address and prints one line per query it received ("query NAME from
// ADDR"), so a test can tell both whether a client got an answer and
// whether its packet arrived at all.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"strings"
)

func main() {
	listen := flag.String("listen", ":53", "UDP listen address")
	answer := flag.String("answer", "192.0.2.53", "IPv4 address every A query is answered with")
	flag.Parse()
	addr, err := netip.ParseAddr(*answer)
	if err != nil || !addr.Is4() {
		log.Fatalf("-answer %q: want an IPv4 address", *answer)
	}
	conn, err := net.ListenPacket("udp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready")
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		name, reply, err := Answer(buf[:n], addr.As4())
		if err != nil {
			fmt.Printf("bad query from %s: %v\n", from, err)
			continue
		}
		fmt.Printf("query %s from %s\n", name, from)
		_, _ = conn.WriteTo(reply, from)
	}
}

// Answer parses a query with one question and returns its name and a
// reply carrying one A record for ip (for any question type: the tests
// only ask for A).
func Answer(q []byte, ip [4]byte) (string, []byte, error) {
	if len(q) < 12 {
		return "", nil, errors.New("short header")
	}
	if binary.BigEndian.Uint16(q[4:6]) != 1 {
		return "", nil, errors.New("want exactly one question")
	}
	var labels []string
	i := 12
	for {
		if i >= len(q) {
			return "", nil, errors.New("truncated name")
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return "", nil, errors.New("bad label")
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return "", nil, errors.New("truncated question")
	}
	question := q[12 : i+4]
	reply := make([]byte, 0, 12+len(question)+16)
	reply = append(reply, q[0], q[1])
	flags := uint16(0x8180) | binary.BigEndian.Uint16(q[2:4])&0x0100 // QR, RA; RD echoed
	reply = binary.BigEndian.AppendUint16(reply, flags)
	reply = binary.BigEndian.AppendUint16(reply, 1) // QDCOUNT
	reply = binary.BigEndian.AppendUint16(reply, 1) // ANCOUNT
	reply = binary.BigEndian.AppendUint16(reply, 0) // NSCOUNT
	reply = binary.BigEndian.AppendUint16(reply, 0) // ARCOUNT
	reply = append(reply, question...)
	reply = append(reply, 0xc0, 12)                  // the name, by pointer to the question
	reply = binary.BigEndian.AppendUint16(reply, 1)  // TYPE A
	reply = binary.BigEndian.AppendUint16(reply, 1)  // CLASS IN
	reply = binary.BigEndian.AppendUint32(reply, 60) // TTL
	reply = binary.BigEndian.AppendUint16(reply, 4)
	reply = append(reply, ip[:]...)
	return strings.Join(labels, "."), reply, nil
}
