package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/errs"
)

// An internal app stores a file and reads it back. It acts with its own
// service account (a client id and secret that auth lists in
// SERVICE_CLIENTS) and finds auth and filestorage through Consul.
func Example() {
	ctx := context.Background()

	// Where the services are: the local Consul agent, watched in the
	// background, so that no request waits for Consul.
	cc, err := consul.NewClient("127.0.0.1:8500", os.Getenv("CONSUL_HTTP_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	resolver := consul.NewResolver(cc, slog.Default())
	defer resolver.Close()

	// The app's token, fetched from auth and renewed before it expires.
	tokens, err := authn.NewTokenSource(authn.TokenSourceOptions{
		ClientID: "reports", ClientSecret: os.Getenv("REPORTS_CLIENT_SECRET"), Resolver: resolver,
	})
	if err != nil {
		log.Fatal(err)
	}

	// filestorage through Consul; at a fixed address it would be
	// client.Options{BaseURL: "http://127.0.0.1:8102", ...}.
	files, err := client.New(client.Options{
		Picker: resolver.Picker(client.ServiceName),
		Token:  tokens.Token, OnUnauthorized: tokens.Invalidate,
	})
	if err != nil {
		log.Fatal(err)
	}

	f, err := files.Upload(ctx, "reports", "2026/q4.csv", strings.NewReader("month,total\n10,42\n"),
		client.UploadOptions{ContentType: "text/csv"})
	switch errs.CodeOf(err) {
	case "":
	case errs.TooLarge, errs.Unavailable:
		log.Fatalf("not stored, try later: %s", errs.MessageOf(err))
	default:
		log.Fatal(err)
	}

	d, err := files.Download(ctx, f.ID, client.Range{})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	body, err := io.ReadAll(d)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s/%s: %d bytes, sha256 %s\n", f.Bucket, f.Path, len(body), f.SHA256)
}
