"""Flags each engine accepts, so a deployment's extra arguments are refused before a container exists.

An engine that meets an unknown flag exits at start-up, long after the admin pressed "deploy"; checking
here turns that into an immediate, readable error. Each table is whitespace-separated options; the
spellings of one option are joined by "|" (its first spelling names it) and a leading "!" marks a
switch, an option that takes no value. The tables are generated from the sources named beside them:
regenerate them for a new engine version rather than editing by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

# A deployment's extra engine arguments: {"--flag": value} (True for a switch) or command-line tokens.
ExtraArgs = Mapping[str, str | int | float | bool] | Sequence[str]

# Versions the specs target. The images are pinned to these tags; the flag tables below were read
# from exactly these releases.
VLLM_VERSION = "0.33.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
OLLAMA_VERSION = "0.32.15"
OLLAMA_IMAGE = f"ollama/ollama:{OLLAMA_VERSION}"
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
LLAMACPP_IMAGE = "appliance/llamacpp-cpu:latest"  # llama-server from xllamacpp (deploy/engine-image/)
LLAMA_SERVER_VERSION = "xllamacpp 2026.10.11549"
LLAMA_SERVER_IMAGE = "ghcr.io/ggml-org/llama.cpp:server"


@dataclass(frozen=True)
class FlagTable:
    """The options one engine's command line accepts."""

    canonical: Mapping[str, str]  # every accepted spelling -> the option's first spelling
    switches: frozenset[str]  # first spellings of the options that take no value

    def known(self) -> list[str]:
        """The first spelling of every option, sorted, for error messages."""
        return sorted(set(self.canonical.values()))


def parse_table(text: str) -> FlagTable:
    """Read a table in the format described in this module's docstring."""
    canonical: dict[str, str] = {}
    switches: set[str] = set()
    for token in text.split():
        names = token.removeprefix("!").split("|")
        for name in names:
            canonical[name] = names[0]
        if token.startswith("!"):
            switches.add(names[0])
    return FlagTable(MappingProxyType(canonical), frozenset(switches))


# `vllm serve` of vLLM 0.33.0: every option string of the parser that
# vllm.entrypoints.common.cli_args.make_arg_parser builds (argparse's own --help left out), read by
# constructing that parser from the vllm-0.33.0 wheel. vLLM also accepts "_" for "-" in names.
_VLLM = """
--additional-config !--aggregate-engine-logging --all2all-backend !--allow-credentials|--no-allow-credentials
!--allow-deprecated-quantization|--no-allow-deprecated-quantization --allowed-headers --allowed-local-media-path
--allowed-media-domains --allowed-methods --allowed-origins --anthropic-disabled-thinking-effort --api-key
--api-server-count|-asc !--async-scheduling|--no-async-scheduling --attention-backend --attention-config|-ac
--aux-output-config --block-size --chat-template --chat-template-content-format --code-revision --cohere-format
!--cohere-is-reasoning-model|--no-cohere-is-reasoning-model --collect-detailed-traces --compilation-config|-cc
--config --config-format --convert --cp-kv-cache-interleave-size --cpu-distributed-timeout-seconds
--cpu-offload-gb --cpu-offload-params --cudagraph-capture-sizes !--cudagraph-metrics|--no-cudagraph-metrics
--custom-histogram-buckets --data-parallel-address|-dpa --data-parallel-backend|-dpb
!--data-parallel-external-lb|--no-data-parallel-external-lb|-dpe
!--data-parallel-hybrid-lb|--no-data-parallel-hybrid-lb|-dph !--data-parallel-multi-port-external-lb|-dpm
--data-parallel-rank|-dpn --data-parallel-rpc-port|-dpp --data-parallel-size|-dp --data-parallel-size-local|-dpl
--data-parallel-start-rank|-dpr --data-parallel-supervisor-port --dbo-decode-token-threshold
--dbo-prefill-token-threshold --dcp-comm-backend --dcp-kv-cache-interleave-size
!--dcp-q-replicate|--no-dcp-q-replicate --decode-context-parallel-size|-dcp --default-chat-template-kwargs
--default-mm-loras --device-ids --diffusion-config|-dc --disable-access-log-for-endpoints
!--disable-cascade-attn|--enable-cascade-attn|--no-disable-cascade-attn
!--disable-chunked-mm-input|--enable-chunked-mm-input|--no-disable-chunked-mm-input
!--disable-custom-all-reduce|--enable-custom-all-reduce|--no-disable-custom-all-reduce
!--disable-fastapi-docs|--enable-fastapi-docs|--no-disable-fastapi-docs
!--disable-hybrid-kv-cache-manager|--enable-hybrid-kv-cache-manager|--no-disable-hybrid-kv-cache-manager
!--disable-log-stats
!--disable-nccl-for-dp-synchronization|--enable-nccl-for-dp-synchronization|--no-disable-nccl-for-dp-synchronization
!--disable-sliding-window|--enable-sliding-window|--no-disable-sliding-window
!--disable-uvicorn-access-log|--enable-uvicorn-access-log|--no-disable-uvicorn-access-log
--distributed-executor-backend --distributed-timeout-seconds --download-dir
--dp-supervisor-probe-failure-threshold --dp-supervisor-probe-interval-s --dp-supervisor-probe-timeout-s
--dp-sync-interval --dtype --ec-manager-config --ec-transfer-config --elastic-ep-max-dp-size
!--enable-auto-tool-choice|--disable-auto-tool-choice|--no-enable-auto-tool-choice
!--enable-batch-sharded-sampling|--disable-batch-sharded-sampling|--no-enable-batch-sharded-sampling
!--enable-chunked-prefill|--disable-chunked-prefill|--no-enable-chunked-prefill
!--enable-cumem-allocator|--disable-cumem-allocator|--no-enable-cumem-allocator
!--enable-dbo|--disable-dbo|--no-enable-dbo !--enable-elastic-ep|--disable-elastic-ep|--no-enable-elastic-ep
!--enable-ep-weight-filter|--disable-ep-weight-filter|--no-enable-ep-weight-filter
!--enable-eplb|--disable-eplb|--no-enable-eplb
!--enable-expert-parallel|--disable-expert-parallel|--no-enable-expert-parallel|-ep
!--enable-fault-tolerance|--disable-fault-tolerance|--no-enable-fault-tolerance
!--enable-flash-late-interaction|--disable-flash-late-interaction|--no-enable-flash-late-interaction
!--enable-flashinfer-autotune|--disable-flashinfer-autotune|--no-enable-flashinfer-autotune
!--enable-force-include-usage|--disable-force-include-usage|--no-enable-force-include-usage
!--enable-hc-sp|--disable-hc-sp|--no-enable-hc-sp
!--enable-layerwise-nvtx-tracing|--disable-layerwise-nvtx-tracing|--no-enable-layerwise-nvtx-tracing
!--enable-log-deltas|--disable-log-deltas|--no-enable-log-deltas
!--enable-log-outputs|--disable-log-outputs|--no-enable-log-outputs
!--enable-log-requests|--disable-log-requests|--no-enable-log-requests
!--enable-logging-iteration-details|--disable-logging-iteration-details|--no-enable-logging-iteration-details
!--enable-lora|--disable-lora|--no-enable-lora
!--enable-mamba-cache-stochastic-rounding|--disable-mamba-cache-stochastic-rounding|--no-enable-mamba-cache-stochastic-rounding
!--enable-mamba-shared-prefix-checkpoint|--disable-mamba-shared-prefix-checkpoint|--no-enable-mamba-shared-prefix-checkpoint
!--enable-mfu-metrics|--disable-mfu-metrics|--no-enable-mfu-metrics
!--enable-mixed-moe-lora-format|--disable-mixed-moe-lora-format|--no-enable-mixed-moe-lora-format
!--enable-mm-embeds|--disable-mm-embeds|--no-enable-mm-embeds
!--enable-moe-shared-loras|--disable-moe-shared-loras|--no-enable-moe-shared-loras
!--enable-nccl-comm-suspend|--disable-nccl-comm-suspend|--no-enable-nccl-comm-suspend
!--enable-offline-docs|--disable-offline-docs|--no-enable-offline-docs
!--enable-per-request-metrics|--disable-per-request-metrics|--no-enable-per-request-metrics
!--enable-prefix-caching|--disable-prefix-caching|--no-enable-prefix-caching
!--enable-prompt-embeds|--disable-prompt-embeds|--no-enable-prompt-embeds
!--enable-prompt-tokens-details|--disable-prompt-tokens-details|--no-enable-prompt-tokens-details
!--enable-request-id-headers|--disable-request-id-headers|--no-enable-request-id-headers
!--enable-return-routed-experts|--disable-return-routed-experts|--no-enable-return-routed-experts
!--enable-scale-out|--disable-scale-out|--no-enable-scale-out
!--enable-server-load-tracking|--disable-server-load-tracking|--no-enable-server-load-tracking
!--enable-shm-tensor-arena|--disable-shm-tensor-arena|--no-enable-shm-tensor-arena
!--enable-sleep-mode|--disable-sleep-mode|--no-enable-sleep-mode
!--enable-ssl-refresh|--disable-ssl-refresh|--no-enable-ssl-refresh
!--enable-tokenizer-info-endpoint|--disable-tokenizer-info-endpoint|--no-enable-tokenizer-info-endpoint
!--enable-tower-connector-lora|--disable-tower-connector-lora|--no-enable-tower-connector-lora
!--enable-trace-replay|--disable-trace-replay|--no-enable-trace-replay !--enforce-eager|--no-enforce-eager
--engram-config --eplb-config !--exclude-tools-when-tool-choice-none|--no-exclude-tools-when-tool-choice-none
--expert-placement-strategy !--fail-on-environ-validation|--no-fail-on-environ-validation
--fault-tolerance-config --fingerprint-mode --fingerprint-value !--fully-sharded-loras|--no-fully-sharded-loras
--gdn-prefill-backend --generation-config --gpu-memory-utilization|--device-memory-utilization !--grpc
--grpc-port --h11-max-header-count --h11-max-incomplete-event-size !--headless --hf-config-path --hf-overrides
--hf-token --host --ignore-patterns !--interleave-mm-strings|--no-interleave-mm-strings --io-processor-plugin
--ir-op-priority --jit-monitor-mode !--jit-monitor-verbose|--no-jit-monitor-verbose --kda-decode-backend
--kda-prefill-backend --kernel-config --kv-cache-dtype --kv-cache-dtype-skip-layers --kv-cache-memory-bytes
!--kv-cache-metrics|--no-kv-cache-metrics --kv-cache-metrics-sample --kv-events-config --kv-offloading-backend
--kv-offloading-size !--kv-sharing-fast-prefill|--no-kv-sharing-fast-prefill --kv-transfer-config
!--language-model-only|--no-language-model-only --limit-mm-per-prompt --linear-backend --load-format
--log-config-file !--log-error-stack|--no-log-error-stack --log-level --logging-config --logits-processors
--logprobs-mode --long-prefill-token-threshold
!--long-prefill-token-threshold-adaptive|--no-long-prefill-token-threshold-adaptive --lora-dtype --lora-modules
--lora-target-modules --mamba-backend --mamba-block-size --mamba-cache-dtype --mamba-cache-mode
--mamba-cache-philox-rounds --mamba-ssm-cache-dtype --mamba-ssu-algorithm --master-addr --master-port
--max-cpu-loras --max-cudagraph-capture-size --max-log-len --max-logprobs --max-lora-cls-labels --max-lora-rank
--max-loras --max-model-len --max-num-active-seqs --max-num-batched-tokens --max-num-queued-reqs
--max-num-queued-tokens --max-num-scheduled-tokens --max-num-seqs --max-parallel-loading-workers
--media-io-kwargs --middleware !--mm-device-do-normalize|--no-mm-device-do-normalize --mm-encoder-attn-backend
--mm-encoder-attn-dtype --mm-encoder-fp8-scale-path --mm-encoder-fp8-scale-save-margin
--mm-encoder-fp8-scale-save-path !--mm-encoder-only|--no-mm-encoder-only --mm-encoder-tp-mode
--mm-hasher-algorithm --mm-ipc-gpu-memory-gb --mm-processor-cache-gb --mm-processor-cache-type
--mm-processor-device --mm-processor-kwargs --mm-shm-cache-max-object-size-mb --mm-tensor-ipc --model
--model-class-overrides --model-impl --model-loader-extra-config --moe-backend !--monokernel|--no-monokernel
--nnodes|-n --node-rank|-r --num-gpu-blocks-override !--numa-bind|--no-numa-bind --numa-bind-cpus
--numa-bind-nodes --offload-backend --offload-group-size --offload-num-in-group --offload-params
--offload-prefetch-step --optimization-level --otlp-traces-endpoint --override-generation-config
--per-request-spec-decode-metrics --performance-mode --pipeline-parallel-size|-pp --pooler-config --port
--prefill-context-parallel-size|-pcp --prefill-schedule-interval --prefix-cache-retention-interval
--prefix-caching-hash-algo --prefix-match-unit --profiler-config --pt-load-map-location --quantization|-q
--quantization-config !--ray-workers-use-nsight|--no-ray-workers-use-nsight --reasoning-config
--reasoning-effort-map --reasoning-parser --reasoning-parser-plugin --renderer-num-workers
--replayssm-buffer-len --response-role !--return-sampling-mask|--no-return-sampling-mask
!--return-tokens-as-token-ids|--no-return-tokens-as-token-ids --revision --root-path --runner
--safetensors-load-strategy --safetensors-prefetch-block-size --safetensors-prefetch-num-threads --scheduler-cls
!--scheduler-reserve-full-isl|--no-scheduler-reserve-full-isl --scheduling-policy --seed --served-model-name
--show-hidden-metrics-for-version --shutdown-timeout !--skip-mm-profiling|--no-skip-mm-profiling
!--skip-tokenizer-init|--no-skip-tokenizer-init --sleep-mode-backend
!--sleep-mode-offload-cudagraph|--no-sleep-mode-offload-cudagraph --sleep-preserve-parameter-names
--sparse-indexer-topk-backend --spec-method --spec-model --spec-tokens
!--specialize-active-lora|--no-specialize-active-lora --speculative-config|-sc --sse-keep-alive-interval
--ssl-ca-certs --ssl-cert-reqs --ssl-certfile --ssl-ciphers --ssl-keyfile --stream-interval
--structured-outputs-config !--swa-bounded-replay|--no-swa-bounded-replay --tensor-parallel-size|-tp --tokenizer
--tokenizer-mode --tokenizer-revision !--tokens-only|--no-tokens-only --tool-call-parser --tool-parser-plugin
--tool-server --tool-strict-level !--trust-remote-code|--no-trust-remote-code
!--trust-request-chat-template|--no-trust-request-chat-template
!--trust-request-mm-kwargs|--no-trust-request-mm-kwargs --ubatch-size --uds
!--use-fp64-gumbel|--no-use-fp64-gumbel !--use-replayssm|--no-use-replayssm
!--use-tqdm-on-load|--no-use-tqdm-on-load --uvicorn-log-level --video-pruning-method --video-pruning-rate
--watchdog-config --watermark --watermark-config --weight-transfer-config --worker-cls --worker-extension-cls
"""

# llama-server, from tools/server/README.md of the llama.cpp tree vendored in llama-cpp-python
# 0.3.36 (the README's tables are generated from common/arg.cpp).
_LLAMA_SERVER = """
--threads|-t --threads-batch|-tb --cpu-mask|-C --cpu-range|-Cr --cpu-strict --prio --poll --cpu-mask-batch|-Cb
--cpu-range-batch|-Crb --cpu-strict-batch --prio-batch --poll-batch --ctx-size|-c --predict|-n|--n-predict
--batch-size|-b --ubatch-size|-ub --keep !--swa-full --flash-attn|-fa !--perf|--no-perf !--escape|-e|--no-escape
--rope-scaling --rope-scale --rope-freq-base --rope-freq-scale --yarn-orig-ctx --yarn-ext-factor
--yarn-attn-factor --yarn-beta-slow --yarn-beta-fast !--kv-offload|-kvo|-nkvo|--no-kv-offload
!--repack|-nr|--no-repack !--no-host --cache-type-k|-ctk --cache-type-v|-ctv --defrag-thold|-dt --rpc
--load-mode|-lm --lazy-mode|-lzm --numa --device|-dev !--list-devices --override-tensor|-ot !--cpu-moe|-cmoe
--n-cpu-moe|-ncmoe --n-cpu-ffn|-ncffn --gpu-layers|-ngl|--n-gpu-layers --split-mode|-sm --tensor-split|-ts
--main-gpu|-mg --fit|-fit --fit-target|-fitt --fit-ctx|-fitc !--check-tensors --override-kv
!--op-offload|--no-op-offload --lora --lora-scaled --control-vector --control-vector-scaled
--control-vector-layer-range --model|-m --model-url|-mu --docker-repo|-dr --hf-repo|-hf|-hfr --hf-file|-hff
--hf-token|-hft !--log-disable --log-file !--log-jsonl|--no-log-jsonl --log-colors !--verbose|-v|--log-verbose
!--offline --verbosity|-lv|--log-verbosity !--log-prefix|--no-log-prefix !--log-timestamps|--no-log-timestamps
--spec-draft-type-k|-ctkd|--cache-type-k-draft --spec-draft-type-v|-ctvd|--cache-type-v-draft --samplers
--seed|-s --sampler-seq|--sampling-seq !--ignore-eos --temp|--temperature --top-k --top-p --min-p
--top-nsigma|--top-n-sigma --xtc-probability --xtc-threshold --typical|--typical-p --repeat-last-n
--repeat-penalty --presence-penalty --frequency-penalty --dry-multiplier --dry-base --dry-allowed-length
--dry-penalty-last-n --dry-sequence-breaker --adaptive-target --adaptive-decay --dynatemp-range --dynatemp-exp
--mirostat --mirostat-lr --mirostat-ent --logit-bias|-l --grammar --grammar-file --json-schema|-j
--json-schema-file|-jf !--backend-sampling|-bs --lookup-cache-static|-lcs --lookup-cache-dynamic|-lcd
--kv-unified-per-slot --ctx-checkpoints|-ctxcp|--swa-checkpoints --checkpoint-min-step|-cms --cache-ram|-cram
!--kv-unified|-kvu|-no-kvu|--no-kv-unified !--cache-idle-slots|--no-cache-idle-slots
!--context-shift|--no-context-shift --reverse-prompt|-r !--special|-sp !--warmup|--no-warmup !--spm-infill
--pooling --parallel|-np !--cont-batching|-cb|-nocb|--no-cont-batching --mmproj|-mm --mmproj-url|-mmu
!--mmproj-auto|--no-mmproj|--no-mmproj-auto !--mmproj-offload|--no-mmproj-offload --mmproj-device|-mmdev
--image-min-tokens --image-max-tokens --mtmd-batch-max-tokens --video-fps --video-timestamp-interval
--video-ffmpeg-dir --alias|-a --tags --embd-normalize --host --port !--reuse-port --path --cors-origins
--cors-methods --cors-headers !--cors-credentials|--no-cors-credentials --api-prefix --ui-config|--webui-config
--ui-config-file|--webui-config-file !--ui-mcp-proxy|--webui-mcp-proxy|--no-ui-mcp-proxy|--no-webui-mcp-proxy
--tools --tools-runtime --mcp-servers-config --mcp-servers-json !--agent|-ag|-no-ag|--no-agent
!--ui|--webui|--no-ui|--no-webui !--embedding|--embeddings !--rerank|--reranking --api-key --api-key-file
--ssl-key-file --ssl-cert-file --chat-template-kwargs --timeout|-to --sse-ping-interval --threads-http
!--cache-prompt|--no-cache-prompt --cache-reuse !--metrics !--props !--slots|--no-slots --slot-save-path
--media-path --models-dir --models-preset --models-max !--models-autoload|--no-models-autoload
!--jinja|--no-jinja --reasoning-format --reasoning|-rea --reasoning-effort --reasoning-budget
--reasoning-budget-message !--reasoning-preserve|--no-reasoning-preserve --chat-template --chat-template-file
!--skip-chat-parsing|--no-skip-chat-parsing !--prefill-assistant|--no-prefill-assistant
--slot-prompt-similarity|-sps !--lora-init-without-apply --sleep-idle-seconds --log-prompts-dir
--spec-draft-hf|-hfd|-hfrd|--hf-repo-draft --spec-draft-threads|-td|--threads-draft
--spec-draft-threads-batch|-tbd|--threads-batch-draft --spec-draft-cpu-mask|-Cd|--cpu-mask-draft
--spec-draft-cpu-range|-Crd|--cpu-range-draft --spec-draft-cpu-strict|--cpu-strict-draft
--spec-draft-prio|--prio-draft --spec-draft-poll|--poll-draft
--spec-draft-cpu-mask-batch|-Cbd|--cpu-mask-batch-draft --spec-draft-cpu-strict-batch|--cpu-strict-batch-draft
--spec-draft-prio-batch|--prio-batch-draft --spec-draft-poll-batch|--poll-batch-draft
--spec-draft-override-tensor|-otd|--override-tensor-draft !--spec-draft-cpu-moe|-cmoed|--cpu-moe-draft
--spec-draft-n-cpu-moe|--spec-draft-ncmoe|-ncmoed|--n-cpu-moe-draft --spec-draft-n-max --spec-draft-n-min
--spec-synth-len --spec-synth-rates --spec-draft-p-split|--draft-p-split --spec-draft-p-min|--draft-p-min
!--spec-draft-backend-sampling|--no-spec-draft-backend-sampling --spec-draft-device|-devd|--device-draft
--spec-draft-ngl|-ngld|--gpu-layers-draft|--n-gpu-layers-draft --spec-draft-model|-md|--model-draft --spec-type
--spec-ngram-mod-n-min --spec-ngram-mod-n-max --spec-ngram-mod-n-match --spec-ngram-simple-size-n
--spec-ngram-simple-size-m --spec-ngram-simple-min-hits --spec-ngram-map-k-size-n --spec-ngram-map-k-size-m
--spec-ngram-map-k-min-hits --spec-ngram-map-k4v-size-n --spec-ngram-map-k4v-size-m
--spec-ngram-map-k4v-min-hits --draft|--draft-n|--draft-max --draft-min|--draft-n-min --spec-ngram-size-n
--spec-ngram-size-m --spec-ngram-min-hits !--embd-gemma-default !--fim-qwen-1.5b-default !--fim-qwen-3b-default
!--fim-qwen-7b-default !--fim-qwen-7b-spec !--fim-qwen-14b-spec !--fim-qwen-30b-default !--gpt-oss-20b-default
!--gpt-oss-120b-default !--vision-gemma-4b-default !--vision-gemma-12b-default !--spec-default
"""

# `python -m llama_cpp.server` of llama-cpp-python 0.3.36: one --<field> per field of ModelSettings
# and ServerSettings in llama_cpp/server/settings.py (llama_cpp/server/cli.py add_args_from_model).
# Booleans take an explicit value (true/false), so none is a switch. --config_file is left out on
# purpose: a config file would replace every setting the console makes.
_LLAMA_CPP_PYTHON = """
--model --model_alias --n_gpu_layers --split_mode --main_gpu --tensor_split --vocab_only --use_mmap --use_mlock
--kv_overrides --rpc_servers --seed --n_ctx --n_batch --n_ubatch --n_threads --n_threads_batch
--rope_scaling_type --rope_freq_base --rope_freq_scale --yarn_ext_factor --yarn_attn_factor --yarn_beta_fast
--yarn_beta_slow --yarn_orig_ctx --mul_mat_q --logits_all --embedding --offload_kqv --flash_attn
--last_n_tokens_size --lora_base --lora_path --numa --chat_format --chat_template_kwargs --clip_model_path
--cache --cache_type --cache_size --hf_tokenizer_config_path --hf_pretrained_model_name_or_path
--hf_model_repo_id --draft_model --draft_model_num_pred_tokens --type_k --type_v --verbose --host --port
--ssl_keyfile --ssl_certfile --api_key --interrupt_requests --disable_ping_events --root_path
"""

VLLM_FLAGS = parse_table(_VLLM)
LLAMA_SERVER_FLAGS = parse_table(_LLAMA_SERVER)
LLAMA_CPP_PYTHON_FLAGS = parse_table(_LLAMA_CPP_PYTHON)

# vllm/config/model.py ModelDType and vllm/model_executor/layers/quantization/__init__.py
# QuantizationMethods, vLLM 0.33.0.
VLLM_DTYPES = frozenset({"auto", "half", "float16", "bfloat16", "float", "float32"})
VLLM_QUANTIZATIONS = frozenset(
    """
    awq auto_awq fp8 fbgemm_fp8 fp_quant modelopt modelopt_fp4 modelopt_mxfp8 modelopt_mixed auto_gptq gptq
    gptq_marlin awq_marlin humming compressed-tensors experts_int8 quark moe_wna16 torchao inc mxfp4 gpt_oss_mxfp4
    deepseek_v4_fp8 online fp8_per_tensor fp8_per_block fp8_per_channel int8_per_channel_weight_only
    nvfp4_per_token mxfp8
    """.split()
)

# Ollama 0.32.15 reads its configuration from the environment only: envconfig/config.go. These are
# the names it reads (the proxy variables and the GPU selectors included).
OLLAMA_ENV = frozenset(
    """
    OLLAMA_AUTH OLLAMA_CONTEXT_LENGTH OLLAMA_DEBUG OLLAMA_DEBUG_LOG_REQUESTS OLLAMA_EDITOR OLLAMA_FLASH_ATTENTION
    OLLAMA_GO_TEMPLATE OLLAMA_GPU_OVERHEAD OLLAMA_HOST OLLAMA_IGPU_ENABLE OLLAMA_KEEP_ALIVE OLLAMA_KV_CACHE_TYPE
    OLLAMA_LLM_LIBRARY OLLAMA_LOAD_TIMEOUT OLLAMA_MAX_LOADED_MODELS OLLAMA_MAX_QUEUE OLLAMA_MAX_TRANSFER_STREAMS
    OLLAMA_MODELS OLLAMA_NOHISTORY OLLAMA_NOPRUNE OLLAMA_NO_CLOUD OLLAMA_NUM_PARALLEL OLLAMA_ORIGINS
    OLLAMA_REMOTES OLLAMA_SCHED_SPREAD OLLAMA_VULKAN LLAMA_ARG_FIT CUDA_VISIBLE_DEVICES HIP_VISIBLE_DEVICES
    ROCR_VISIBLE_DEVICES GGML_VK_VISIBLE_DEVICES GPU_DEVICE_ORDINAL HSA_OVERRIDE_GFX_VERSION HTTPS_PROXY
    HTTP_PROXY NO_PROXY
    """.split()
)


class FlagError(ValueError):
    """Extra arguments an engine would refuse, or that would override what the console sets."""

    def __init__(
        self, message: str, *, unknown: Sequence[str] = (), managed: Sequence[str] = (), known: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.unknown = list(unknown)
        self.managed = list(managed)
        self.known = list(known)


_NEGATIVE_NUMBER = re.compile(r"^-\d")


def vllm_flag_name(token: str) -> str:
    """vLLM's parser reads "--max_model_len" as "--max-model-len", "--x.key v" as part of --x and
    "-O3" as "--optimization-level 3" (vllm/utils/argparse_utils.py)."""
    if token.startswith("-O"):
        return "--optimization-level"
    name = token.split("=", 1)[0].split(".", 1)[0]
    return name[:2] + name[2:].replace("_", "-") if name.startswith("--") else name


def exact_flag_name(token: str) -> str:
    """argparse (llama-cpp-python) reads "--flag=value" as --flag, and nothing else loosely."""
    return token.split("=", 1)[0]


def llama_server_flag_name(token: str) -> str:
    """llama.cpp's parser reads "_" as "-" in "--" options and knows no "--flag=value" form
    (common/arg.cpp, common_params_parse_ex)."""
    return token.replace("_", "-") if token.startswith("--") else token


def flag_names(args: ExtraArgs) -> list[str]:
    """The option tokens of `args`, in order: mapping keys, or list tokens that start with "-"."""
    if isinstance(args, str):
        raise FlagError("extra_args must be a list of tokens or a mapping, not one string")
    if isinstance(args, Mapping):
        return [_as_flag(str(key)) for key in args]
    return [str(t) for t in args if str(t).startswith("-") and not _NEGATIVE_NUMBER.match(str(t))]


def check_flags(
    args: ExtraArgs,
    table: FlagTable,
    *,
    engine: str,
    managed: frozenset[str] = frozenset(),
    normalise: Callable[[str], str] = exact_flag_name,
) -> None:
    """Raise FlagError listing flags `table` lacks and flags the console sets itself (`managed`)."""
    # Report the flags as written; look them up as the engine's parser would read them.
    names = [(token, normalise(token)) for token in flag_names(args)]
    unknown = [written for written, name in names if name not in table.canonical]
    owned = [written for written, name in names if table.canonical.get(name) in managed]
    if unknown:
        known = table.known()
        raise FlagError(
            f"unknown flags for {engine}: {', '.join(unknown)}. Known flags: {', '.join(known)}",
            unknown=unknown,
            known=known,
        )
    if owned:
        raise FlagError(
            f"set by the console from the deployment's fields, not extra_args: {', '.join(owned)}",
            managed=owned,
            known=table.known(),
        )


def render_args(args: ExtraArgs, table: FlagTable, normalise: Callable[[str], str] = exact_flag_name) -> list[str]:
    """Command-line tokens for checked `args`; a mapping's True marks a switch, other values follow."""
    if not isinstance(args, Mapping):
        return [str(token) for token in args]
    tokens: list[str] = []
    for key, value in args.items():
        flag = _as_flag(str(key))
        tokens += _render_item(flag, value, table.canonical.get(normalise(flag), "") in table.switches)
    return tokens


def _as_flag(key: str) -> str:
    return key if key.startswith("-") else f"--{key}"


def _render_item(flag: str, value: object, is_switch: bool) -> list[str]:
    if is_switch:
        if value is True:
            return [flag]
        raise FlagError(f"{flag} is a switch: give True, or use its negative form")
    if value is None or value == "":
        raise FlagError(f"{flag} needs a value")
    if isinstance(value, bool):
        return [flag, "true" if value else "false"]
    return [flag, str(value)]
