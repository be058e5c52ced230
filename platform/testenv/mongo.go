package testenv

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// DropMongoDatabases drops the named databases at uri, the ones a test made
// for itself (best effort: clean-up must not fail a test that passed).
func DropMongoDatabases(uri string, names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return
	}
	defer func() { _ = client.Disconnect(ctx) }()
	for _, name := range names {
		_ = client.Database(name).Drop(ctx)
	}
}
