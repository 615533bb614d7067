{{- define "api-service.name" -}}
{{- .Chart.Name -}}
{{- end -}}

{{- define "api-service.labels" -}}
app: {{ include "api-service.name" . }}
app.kubernetes.io/name: {{ include "api-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "api-service.podTemplate" -}}
metadata:
  labels:
    app: {{ include "api-service.name" . }}
spec:
  containers:
    - name: api
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPort }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
{{- end -}}
