package exporter_test

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type (
	protoMessage     = proto.Message
	protoreflectName = protoreflect.Name
)
