package app

// The JSON log format, offered by --logging-format=json as kube-apiserver
// does; the logging flags are applied by Options.ApplyLogging.
import _ "k8s.io/component-base/logs/json/register"
