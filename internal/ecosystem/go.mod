module github.com/dualstack-go/dualstack/internal/ecosystem

go 1.26.0

replace github.com/dualstack-go/dualstack => ../..

require (
	github.com/cloudflare/tableflip v1.2.3
	github.com/dualstack-go/dualstack v0.0.0-00010101000000-000000000000
	github.com/quic-go/quic-go v0.65.0
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.50.0
	google.golang.org/grpc v1.85.0
)

require (
	github.com/quic-go/qpack v0.6.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
