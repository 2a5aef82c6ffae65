// Command mcpclient is the MCP client integration tests run inside an
// agent: it calls one tool on a streamable-HTTP MCP server and prints the
// result as JSON, as claude would see it.
//
//	mcpclient URL TOOL JSON-ARGUMENTS
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: mcpclient URL TOOL JSON-ARGUMENTS")
		os.Exit(2)
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(os.Args[3]), &args); err != nil {
		fmt.Fprintln(os.Stderr, "arguments:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "bot-bottle-test", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: os.Args[1]}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: os.Args[2], Arguments: args})
	if err != nil {
		fmt.Fprintln(os.Stderr, "call:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if res.IsError {
		os.Exit(3)
	}
}
