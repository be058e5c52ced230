package mongoconn_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/testenv"
)

func TestRealDatabaseRoundTrip(t *testing.T) {
	uri := testenv.MongoURI(t)
	r := config.NewReader(func(k string) string { return map[string]string{"MONGO_URI": uri}[k] })
	cfg := mongoconn.ReadConfig(r, "audiomill_test")
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	client, err := mongoconn.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 20*time.Second)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	if err := mongoconn.Ping(client)(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	coll := client.Database(cfg.Database).Collection("mongoconn_" + strings.ReplaceAll(t.Name(), "/", "_"))
	t.Cleanup(func() { _ = coll.Drop(context.Background()) })
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		N int `bson:"n"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got); err != nil || got.N != 1 {
		t.Fatalf("find = %+v, %v", got, err)
	}
}

// A database that is down fails the check within the server-selection
// timeout: no hang.
func TestPingDownFailsFast(t *testing.T) {
	client, err := mongoconn.Connect(mongoconn.Config{
		URI: "mongodb://127.0.0.1:1/", ServerSelectionTimeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	start := time.Now()
	if err := mongoconn.Ping(client)(context.Background()); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("ping took %s", d)
	}
	// An operation on a database that is down is a 503, not a 500.
	_, err = client.Database("x").Collection("y").InsertOne(context.Background(), map[string]int{"a": 1})
	if errs.CodeOf(fmt.Errorf("store: insert: %w", err)) != errs.Unavailable {
		t.Fatalf("insert with the database down: %v has code %s, want unavailable", err, errs.CodeOf(err))
	}
}

func TestErrInvalidURI(t *testing.T) {
	r := config.NewReader(func(k string) string { return map[string]string{"MONGO_URI": "postgres://x"}[k] })
	mongoconn.ReadConfig(r, "db")
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "MONGO_URI") {
		t.Fatalf("Err() = %v, want MONGO_URI named", err)
	}
}

// Every start ensures the same indexes again; FerretDB 1.24 drops the
// connection when one createIndexes command names several existing ones.
func TestEnsureIndexesTwice(t *testing.T) {
	client, err := mongoconn.Connect(mongoconn.Config{URI: testenv.MongoURI(t), Database: "x"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 20*time.Second)
	defer client.Disconnect(ctx)
	db := client.Database(fmt.Sprintf("mongoconn_ix_%d", time.Now().UnixNano()))
	defer db.Drop(ctx)
	coll := db.Collection("things")
	models := []mongo.IndexModel{
		{Keys: bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 1}}},
		{Keys: bson.D{{Key: "c", Value: 1}}},
	}
	for round := range 3 {
		if err := mongoconn.EnsureIndexes(ctx, coll, models...); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil || len(specs) != 3 {
		t.Fatalf("indexes = %v, %v; want _id and the two", specs, err)
	}
}
