// A user's program: add a task, then watch for its CREATED event.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"google.golang.org/protobuf/proto"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
	"github.com/rigger-dev/rigger/clients/go/rigger"
)

func main() {
	conn, err := rigger.Dial(os.Args[1], rigger.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := riggerv1.NewRiggerServiceClient(conn)
	ctx := context.Background()
	added, err := client.AddTask(ctx, &riggerv1.AddTaskRequest{Title: "from the go consumer"})
	if err != nil {
		log.Fatal(err)
	}
	replay := &riggerv1.SubscribeToTaskEventsRequest{AfterSequence: proto.Uint64(0)}
	for event, err := range rigger.Watch(ctx, client, replay, rigger.WatchOptions{}) {
		if err != nil {
			log.Fatal(err)
		}
		if event.GetTask().GetId() == added.GetTask().GetId() {
			fmt.Println(event.GetEventType(), event.GetTask().GetTitle())
			return
		}
	}
}
