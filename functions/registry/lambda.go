package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdaurl"
	"github.com/aws/aws-sdk-go-v2/aws"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/pullthrough/pullthrough/internal/proxy"
)

// fillEvent is the event the function sends itself to run a fill in an
// invocation of its own (up to 15 minutes) instead of inside a client's
// request. Function URL requests never have this shape.
type fillEvent struct {
	Pullthrough string        `json:"pullthrough"` // "fill"
	Job         proxy.FillJob `json:"job"`
}

// serveLambda answers function URL requests (RESPONSE_STREAM), the
// function's own fill events and scheduled sweep events.
func serveLambda(p *proxy.Proxy, retention time.Duration) {
	url := lambdaurl.Wrap(p)
	lambda.StartHandlerFunc(func(ctx context.Context, raw json.RawMessage) (any, error) {
		var fe fillEvent
		if json.Unmarshal(raw, &fe) == nil && fe.Pullthrough == "fill" {
			return nil, p.RunFill(ctx, fe.Job)
		}
		var se sweepEvent
		if json.Unmarshal(raw, &se) == nil && se.Sweep != nil {
			return runSweepEvent(ctx, p, retention, se)
		}
		var req events.LambdaFunctionURLRequest
		if err := json.Unmarshal(raw, &req); err != nil || req.RequestContext.HTTP.Method == "" {
			return nil, fmt.Errorf("unexpected event: neither a function URL request nor a fill")
		}
		// The streamed response is an io.Reader, which the runtime streams.
		return url(ctx, &req)
	})
}

// selfInvoker starts fills as asynchronous invocations of this function.
func selfInvoker(awsCfg aws.Config, functionName string) func(context.Context, proxy.FillJob) error {
	client := awslambda.NewFromConfig(awsCfg)
	return func(ctx context.Context, job proxy.FillJob) error {
		payload, err := json.Marshal(fillEvent{Pullthrough: "fill", Job: job})
		if err != nil {
			return err
		}
		_, err = client.Invoke(ctx, &awslambda.InvokeInput{
			FunctionName:   aws.String(functionName),
			InvocationType: types.InvocationTypeEvent,
			Payload:        payload,
		})
		return err
	}
}

// reportInitError tells the Lambda Runtime API that the function cannot
// start (POST /runtime/init/error): Lambda then answers the invocation
// with this error, and logs it, instead of a bare "Runtime exited". The
// error is already secret-free (configuration errors never echo values).
func reportInitError(runtimeAPI string, err error) {
	body, _ := json.Marshal(map[string]string{
		"errorType":    "pullthrough.StartupError",
		"errorMessage": strings.ReplaceAll(err.Error(), "\n", "; "),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, rerr := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+runtimeAPI+"/2018-06-01/runtime/init/error", bytes.NewReader(body))
	if rerr != nil {
		return
	}
	req.Header.Set("Lambda-Runtime-Function-Error-Type", "pullthrough.StartupError")
	req.Header.Set("Content-Type", "application/json")
	if resp, rerr := http.DefaultClient.Do(req); rerr == nil {
		resp.Body.Close()
	}
}
