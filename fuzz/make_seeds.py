"""Writes fuzz/seeds/<target>/: a few valid inputs per target, from docs/PROTOCOL.md and the
providers' documented answers. Run: python3 fuzz/make_seeds.py"""
import json, os, base64, re
os.chdir(os.path.dirname(os.path.abspath(__file__)))
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
def put(target, name, data):
    d = f"seeds/{target}"; os.makedirs(d, exist_ok=True)
    if isinstance(data, str): data = data.encode()
    open(f"{d}/{name}", "wb").write(data)

# command: PROTOCOL.md §2 example verbatim, plus an edit and a text command of §2's fields
proto = open('../docs/PROTOCOL.md').read()
m = re.search(r"## 2\. Command.*?```json\n(.*?)```", proto, re.S)
put("command", "protocol-image-generate.json", m.group(1))
put("command", "image-edit.json", json.dumps({"request_id": "r-edit-1", "tenant": "acme", "kind": "image.edit",
    "input": {"prompt": "make the door red", "images": [{"artifact_id": "a1"}, {"url": "https://cdn.example/in.png"}],
              "mask": {"b64": PNG, "mime": "image/png"}, "n": 2, "size": "1024x1024"},
    "route": {"strategy": "priority", "max_attempts": 2}}))
put("command", "text-generate.json", json.dumps({"v": 1, "request_id": "r-text-1", "tenant": "acme", "kind": "text.generate",
    "input": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
              "max_tokens": 64, "temperature": 0.2, "stream": True},
    "route": {"provider": "auto", "strategy": "priority", "fallback": True}, "priority": 3, "deadline_ms": 30000}))

# edit_form: content type line, chunk-length byte, multipart body (OpenAI /v1/images/edits fields)
png = base64.b64decode(PNG)
def form(boundary, parts, end=b"\r\n"):
    b = b""
    for name, filename, content in parts:
        b += b"--" + boundary + end
        fn = b'; filename="%s"' % filename if filename else b""
        ct = end + b"Content-Type: image/png" if filename else b""
        b += b'Content-Disposition: form-data; name="%s"%s%s%s%s' % (name, fn, ct, end, end)
        b += content + end
    return b + b"--" + boundary + b"--" + end
def edit(name, boundary, parts, size, end=b"\r\n"):
    put("edit_form", name, b"multipart/form-data; boundary=" + boundary + b"\n" + bytes([size]) + form(boundary, parts, end))
edit("one-image.form", b"X-BOUNDARY", [(b"image", b"a.png", png), (b"prompt", None, b"a red door"),
     (b"model", None, b"gpt-image-1"), (b"n", None, b"1"), (b"size", None, b"1024x1024")], 255)
edit("images-and-mask.form", b"----WebKitFormBoundary7MA4YWxkTrZu0gW", [(b"image[]", b"a.png", png), (b"image[]", b"b.png", png),
     (b"mask", b"mask.png", png), (b"prompt", None, b"inpaint the sky"), (b"quality", None, b"high"),
     (b"response_format", None, b"b64_json"), (b"output_format", None, b"png"), (b"user", None, b"u-42")], 6)
edit("one-byte-chunks.form", b"abc", [(b"image", b"a.png", png), (b"prompt", None, b"p"), (b"model", None, b"dall-e-2"), (b"response_format", None, b"url")], 0)

# provider_answer: first byte = reader index (AnswerReader::ALL order), rest = body from provider-apis.md
answers = [
 (0, "openai-images.json", {"created": 1747000000, "background": "opaque", "output_format": "png", "quality": "high", "size": "1024x1024",
   "data": [{"b64_json": PNG}], "usage": {"input_tokens": 18, "input_tokens_details": {"text_tokens": 18, "image_tokens": 0}, "output_tokens": 4160, "total_tokens": 4178}}),
 (0, "openai-images-url.json", {"created": 1747000000, "data": [{"url": "https://oaidalleapiprodscus.blob.core.windows.net/private/img.png?st=1&se=2&sig=3", "revised_prompt": "A detailed watercolor of a lighthouse"}]}),
 (1, "openai-chat.json", {"id": "chatcmpl-B9x2f1", "object": "chat.completion", "created": 1747000000, "model": "gpt-4o-mini-2024-07-18",
   "system_fingerprint": "fp_0aa8d3e20b", "service_tier": "default",
   "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {"role": "assistant", "content": "Hello!", "refusal": None, "annotations": []}}],
   "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}),
 (2, "anthropic-message.json", {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
   "content": [{"type": "text", "text": "Hello! How can I help?"}], "stop_reason": "end_turn", "stop_sequence": None,
   "usage": {"input_tokens": 12, "output_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"}}),
 (3, "gemini-text.json", {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello there."}]}, "finishReason": "STOP", "index": 0}],
   "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}, "modelVersion": "gemini-2.5-flash"}),
 (4, "gemini-images.json", {"candidates": [{"content": {"role": "model", "parts": [{"text": "Here is the watercolor version."}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]},
   "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 290, "candidatesTokenCount": 1300, "totalTokenCount": 1590},
   "modelVersion": "gemini-2.5-flash-image", "responseId": "mJ2kaPrAJNu3nsEPlq-r8QQ"}),
 (4, "gemini-blocked.json", {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 12}}),
 (5, "gemini-predict.json", {"predictions": [{"bytesBase64Encoded": PNG, "mimeType": "image/png"}, {"raiFilteredReason": "Unable to show generated images. Support codes: 56562880"}],
   "positivePromptSafetyAttributes": {"safetyAttributes": {"categories": [], "scores": []}, "contentType": "Positive Prompt"}}),
 (6, "stability-v1.json", {"artifacts": [{"base64": PNG, "seed": 1050625087, "finishReason": "SUCCESS"}, {"base64": PNG, "seed": 1229191277, "finishReason": "CONTENT_FILTERED"}]}),
 (7, "stability-v2.json", {"image": PNG, "finish_reason": "SUCCESS", "seed": 343940597}),
 (8, "ideogram.json", {"created": "2025-08-27T10:23:28.806107+00:00", "data": [{"prompt": "A minimalist poster of a lighthouse", "resolution": "1024x1024",
   "is_image_safe": True, "seed": 511526458, "style_type": "DESIGN", "url": "https://ideogram.ai/api/images/ephemeral/xxxx.png?exp=1756290208&sig=1"}]}),
 (9, "seedream.json", {"model": "doubao-seedream-4-0-250828", "created": 1757323224, "data": [{"url": "https://ark-content.example/0_0.jpeg?X-Tos-Expires=86400", "size": "2048x2048"}, {"b64_json": PNG, "size": "2048x2048"}],
   "usage": {"generated_images": 2, "output_tokens": 16384, "total_tokens": 16384}}),
 (10, "aliyun-submit.json", {"output": {"task_status": "PENDING", "task_id": "0385dc79-5ff8-4d82-bcb6-123456789abc"}, "request_id": "4909100c-7b5a-9f92-bfe5-123456789abc"}),
 (11, "aliyun-running.json", {"request_id": "e5d70b02-ebd3-98ce-9fe8-123456789abc", "output": {"task_id": "t-1", "task_status": "RUNNING",
   "submit_time": "2025-01-08 16:03:59.840", "scheduled_time": "2025-01-08 16:03:59.863", "task_metrics": {"TOTAL": 1, "SUCCEEDED": 0, "FAILED": 0}}}),
 (11, "aliyun-succeeded.json", {"request_id": "f767d108-7d50-908b-a6d9-123456789abc", "output": {"task_id": "t-1", "task_status": "SUCCEEDED",
   "submit_time": "2025-01-08 16:03:59.840", "end_time": "2025-01-08 16:04:10.660",
   "results": [{"orig_prompt": "p", "actual_prompt": "p2", "url": "https://dashscope-result.example/xxxx.png?Expires=1736409850"}, {"code": "InternalError.Timeout", "message": "timeout"}],
   "task_metrics": {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1}}, "usage": {"image_count": 1}}),
 (11, "aliyun-failed.json", {"request_id": "e5d70b02", "output": {"task_id": "t-1", "task_status": "FAILED", "code": "DataInspectionFailed",
   "message": "Output data may contain inappropriate content.", "task_metrics": {"TOTAL": 1, "SUCCEEDED": 0, "FAILED": 1}}}),
]
for pick, name, body in answers:
    put("provider_answer", name, bytes([pick]) + json.dumps(body).encode())

# provider_error: provider byte (ERROR_PROVIDERS order), status (two bytes, 100 + n % 900), retry-after line, body
def err(pick, status, retry, name, body):
    n = status - 100
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    put("provider_error", name, bytes([pick, n >> 8, n & 255]) + (retry.encode() + b"\n" if retry is not None else b"") + raw)
err(0, 401, "", "openai-401.json", {"error": {"message": "Incorrect API key provided: sk-abc****xyz. You can find your API key at https://platform.example/account/api-keys.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
err(0, 429, "20", "openai-429-quota.json", {"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}})
err(0, 400, None, "openai-moderation.json", {"error": {"message": "Your request was rejected by the safety system.", "type": "image_generation_user_error", "param": None, "code": "moderation_blocked", "moderation_details": {"moderation_stage": "input", "categories": ["harassment"]}}})
err(1, 529, "3", "anthropic-529.json", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_011Ca6u66aLnUk1L2q2MSyRy"})
err(2, 429, None, "gemini-429.json", {"error": {"code": 429, "message": "You exceeded your current quota, please check your plan and billing details.", "status": "RESOURCE_EXHAUSTED",
    "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "m", "quotaId": "q"}]}, {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"}]}})
err(2, 400, None, "gemini-400-wrapped.json", [{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}])
err(3, 403, None, "stability-403.json", {"id": "0123456789abcdef0123456789abcdef", "name": "content_moderation", "errors": ["Your request was flagged by our content moderation system."]})
err(3, 404, None, "stability-v1-404.json", {"id": "a1b2", "name": "not_found", "message": "The specified engine (ID some-fake-engine) was not found."})
err(4, 422, None, "ideogram-422.json", {"error": "Prompt or provided image failed the safety checks"})
err(5, 400, None, "seedream-400.json", {"error": {"code": "InvalidParameter", "message": "The parameter `size` specified in the request is not valid. Request id: 0217573232240", "param": "size", "type": "BadRequest"}})
err(5, 429, "Wed, 21 Oct 2015 07:28:00 GMT", "seedream-429.json", {"error": {"code": "QuotaExceeded", "message": "quota", "param": "", "type": "TooManyRequests"}})
err(6, 401, None, "aliyun-401.json", {"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "01415ff3-53f4-989d-83c0-3eb61fa1418e"})
err(6, 429, "60", "aliyun-429.json", {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded, please try again later.", "request_id": "0141"})

# provider_stream: reader byte (OpenAI chat, Anthropic, Gemini), chunk-length byte, SSE text
def sse(events, end="\n"):
    t = ""
    for name, data in events:
        if name: t += f"event: {name}{end}"
        t += f"data: {data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))}{end}{end}"
    return t.encode()
ch = lambda c, fr=None, extra={}: {"id": "chatcmpl-B9x2f1", "object": "chat.completion.chunk", "created": 1747000000, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "delta": c, "logprobs": None, "finish_reason": fr}], **extra}
openai = [(None, ch({"role": "assistant", "content": ""})), (None, ch({"content": "Hel"})), (None, ch({}, "stop")),
          (None, {"id": "chatcmpl-B9x2f1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}),
          (None, "[DONE]")]
anthropic = [("message_start", {"type": "message_start", "message": {"id": "msg_01XF", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "! How can I help?"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 9}}),
    ("message_stop", {"type": "message_stop"})]
gemini = [(None, {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 5}}),
    (None, {"candidates": [{"content": {"parts": [{"text": "lo"}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}})]
put("provider_stream", "openai-chat.sse", bytes([0, 255]) + sse(openai))
put("provider_stream", "openai-chat-error.sse", bytes([0, 16]) + sse([(None, ch({"content": "Hi"})), (None, {"error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}})]))
put("provider_stream", "anthropic.sse", bytes([1, 255]) + sse(anthropic))
put("provider_stream", "anthropic-error.sse", bytes([1, 9]) + sse(anthropic[:4] + [("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]))
put("provider_stream", "gemini-crlf.sse", bytes([2, 255]) + sse(gemini, "\r\n"))
put("provider_stream", "gemini-small-chunks.sse", bytes([2, 2]) + sse(gemini))
