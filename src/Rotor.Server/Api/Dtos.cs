using System.Text.Json;
using System.Text.Json.Serialization;

namespace Rotor.Server.Api;

// The OpenAI wire shapes Rotor reads and writes (snake_case names as OpenAI spells them). Fields a client may send that
// Rotor does not use are ignored; fields of the wrong JSON type are refused with the field's path.

/// <summary>A chat message of a request: role and text (a string, or an array of text parts).</summary>
public sealed class ChatMessageDto
{
    /// <summary>system, user or assistant (developer is read as system).</summary>
    [JsonPropertyName("role")] public string? Role { get; set; }
    /// <summary>The text.</summary>
    [JsonPropertyName("content"), JsonConverter(typeof(ContentConverter))] public string? Content { get; set; }
}

/// <summary>Options of a streamed response.</summary>
public sealed class StreamOptionsDto
{
    /// <summary>Send a last chunk with the usage counts.</summary>
    [JsonPropertyName("include_usage")] public bool? IncludeUsage { get; set; }
}

/// <summary>Rotor's extension of a chat request: answer from retrieved passages (the response carries them in
/// <c>sources</c>).</summary>
public sealed class RetrievalDto
{
    /// <summary>Passages to retrieve at most (default 4).</summary>
    [JsonPropertyName("top")] public int? Top { get; set; }
    /// <summary>hybrid (default), dense or lexical.</summary>
    [JsonPropertyName("mode")] public string? Mode { get; set; }
    /// <summary>The adaptive rule, as <c>rotor ask --adaptive</c> names it: score, model or off (default: the server's).</summary>
    [JsonPropertyName("adaptive")] public string? Adaptive { get; set; }
}

/// <summary>POST /v1/chat/completions and /v1/completions (chat uses <see cref="Messages"/>, completions <see cref="Prompt"/>).</summary>
public sealed class CompletionRequestDto
{
    /// <summary>Model id (see GET /v1/models).</summary>
    [JsonPropertyName("model")] public string? Model { get; set; }
    /// <summary>The conversation (chat).</summary>
    [JsonPropertyName("messages")] public List<ChatMessageDto>? Messages { get; set; }
    /// <summary>The prompt (completions): a string, an array of one string, token ids, or an array of one array of ids.</summary>
    [JsonPropertyName("prompt"), JsonConverter(typeof(PromptConverter))] public PromptDto? Prompt { get; set; }
    /// <summary>Stream server-sent events.</summary>
    [JsonPropertyName("stream")] public bool? Stream { get; set; }
    /// <summary>Stream options.</summary>
    [JsonPropertyName("stream_options")] public StreamOptionsDto? StreamOptions { get; set; }
    /// <summary>Tokens to generate at most.</summary>
    [JsonPropertyName("max_tokens")] public int? MaxTokens { get; set; }
    /// <summary>Newer name of <see cref="MaxTokens"/>.</summary>
    [JsonPropertyName("max_completion_tokens")] public int? MaxCompletionTokens { get; set; }
    /// <summary>Temperature (0..2; 0 is greedy).</summary>
    [JsonPropertyName("temperature")] public float? Temperature { get; set; }
    /// <summary>Nucleus mass (0, 1].</summary>
    [JsonPropertyName("top_p")] public float? TopP { get; set; }
    /// <summary>Top-k (llama.cpp's extension; 0 is all).</summary>
    [JsonPropertyName("top_k")] public int? TopK { get; set; }
    /// <summary>Min-p (llama.cpp's extension).</summary>
    [JsonPropertyName("min_p")] public float? MinP { get; set; }
    /// <summary>Frequency penalty, applied as a repetition penalty of 1 + value.</summary>
    [JsonPropertyName("frequency_penalty")] public float? FrequencyPenalty { get; set; }
    /// <summary>Stop texts (a string or up to 4 strings).</summary>
    [JsonPropertyName("stop"), JsonConverter(typeof(StringListConverter))] public List<string>? Stop { get; set; }
    /// <summary>Seed of the sampler.</summary>
    [JsonPropertyName("seed")] public long? Seed { get; set; }
    /// <summary>Choices (only 1).</summary>
    [JsonPropertyName("n")] public int? N { get; set; }
    /// <summary>Log-probabilities of the generated tokens: chat, true or false; completions, the number of most likely
    /// alternatives (0..20).</summary>
    [JsonPropertyName("logprobs")] public JsonElement? Logprobs { get; set; }
    /// <summary>Chat: the most likely alternatives given at each token (0..20; needs logprobs true).</summary>
    [JsonPropertyName("top_logprobs")] public int? TopLogprobs { get; set; }
    /// <summary>Completions: give the prompt back before the completion (with logprobs, the prompt's tokens scored too).</summary>
    [JsonPropertyName("echo")] public bool? Echo { get; set; }
    /// <summary>Rotor: answer from retrieved passages.</summary>
    [JsonPropertyName("retrieval")] public RetrievalDto? Retrieval { get; set; }
}

/// <summary>Token counts.</summary>
public sealed class UsageDto
{
    /// <summary>Prompt tokens.</summary>
    [JsonPropertyName("prompt_tokens")] public int PromptTokens { get; set; }
    /// <summary>Generated tokens.</summary>
    [JsonPropertyName("completion_tokens")] public int CompletionTokens { get; set; }
    /// <summary>Both.</summary>
    [JsonPropertyName("total_tokens")] public int TotalTokens { get; set; }
    /// <summary>What became of the prompt tokens (generations only).</summary>
    [JsonPropertyName("prompt_tokens_details"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public PromptTokensDetailsDto? PromptTokensDetails { get; set; }
}

/// <summary>Prompt token counts by kind.</summary>
public sealed class PromptTokensDetailsDto
{
    /// <summary>Prompt tokens a sequence slot already held from an earlier request (not run again).</summary>
    [JsonPropertyName("cached_tokens")] public int CachedTokens { get; set; }
}

/// <summary>A passage an answer was grounded on, numbered as the answer cites it.</summary>
public sealed class SourceDto
{
    /// <summary>The number cited as [n].</summary>
    [JsonPropertyName("number")] public int Number { get; set; }
    /// <summary>Passage id.</summary>
    [JsonPropertyName("id")] public string Id { get; set; } = "";
    /// <summary>Document title.</summary>
    [JsonPropertyName("title")] public string Title { get; set; } = "";
    /// <summary>Section.</summary>
    [JsonPropertyName("section")] public string Section { get; set; } = "";
    /// <summary>Passage text.</summary>
    [JsonPropertyName("text")] public string Text { get; set; } = "";
    /// <summary>Retrieval score.</summary>
    [JsonPropertyName("score")] public float Score { get; set; }
    /// <summary>Whether the prompt held only the passage's leading words (its excerpt); <see cref="Text"/> is the whole passage.</summary>
    [JsonPropertyName("truncated"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool Truncated { get; set; }
}

/// <summary>The closed-book confidence the model rule measured (as <c>rotor ask --json</c> writes it).</summary>
public sealed class ConfidenceDto
{
    /// <summary>Mean probability of the most likely token over the measured steps (the confidence).</summary>
    [JsonPropertyName("mean_max_probability")] public double MeanMaxProbability { get; set; }
    /// <summary>Mean entropy of the next-token distribution, in nats.</summary>
    [JsonPropertyName("mean_entropy")] public double MeanEntropy { get; set; }
    /// <summary>Steps measured.</summary>
    [JsonPropertyName("steps")] public int Steps { get; set; }
    /// <summary>The closed-book answer's first tokens (not the answer given).</summary>
    [JsonPropertyName("closed_book_text")] public string ClosedBookText { get; set; } = "";
}

/// <summary>Rotor: the retrieval decision of a grounded answer (as <c>rotor ask --json</c> writes it).</summary>
public sealed class RetrievalDecisionDto
{
    /// <summary>The rule that decided: score, model or off.</summary>
    [JsonPropertyName("mode")] public string Mode { get; set; } = "";
    /// <summary>Whether passages were given to the model.</summary>
    [JsonPropertyName("retrieve")] public bool Retrieve { get; set; }
    /// <summary>Passages chosen (before the context budget).</summary>
    [JsonPropertyName("count")] public int Count { get; set; }
    /// <summary>Why, with the numbers.</summary>
    [JsonPropertyName("reason")] public string Reason { get; set; } = "";
    /// <summary>The model rule's measurement (absent for the other rules).</summary>
    [JsonPropertyName("confidence"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ConfidenceDto? Confidence { get; set; }
}

/// <summary>A message of a response (or the delta of a chunk).</summary>
public sealed class ResponseMessageDto
{
    /// <summary>assistant (first chunk and whole responses).</summary>
    [JsonPropertyName("role"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Role { get; set; }
    /// <summary>Text.</summary>
    [JsonPropertyName("content"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Content { get; set; }
}

/// <summary>One choice of a chat or text completion (whole or a streamed chunk).</summary>
public sealed class ChoiceDto
{
    /// <summary>Always 0.</summary>
    [JsonPropertyName("index")] public int Index { get; set; }
    /// <summary>Chat: the message.</summary>
    [JsonPropertyName("message"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ResponseMessageDto? Message { get; set; }
    /// <summary>Chat chunk: the delta.</summary>
    [JsonPropertyName("delta"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ResponseMessageDto? Delta { get; set; }
    /// <summary>Text completion: the text.</summary>
    [JsonPropertyName("text"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Text { get; set; }
    /// <summary>stop or length (null until the last chunk).</summary>
    [JsonPropertyName("finish_reason")] public string? FinishReason { get; set; }
    /// <summary>The tokens' log-probabilities where asked for: chat <see cref="ChatLogprobsDto"/>, completions
    /// <see cref="TextLogprobsDto"/>.</summary>
    [JsonPropertyName("logprobs"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public JsonElement? Logprobs { get; set; }
}

/// <summary>A token of chat log-probabilities: its text, the UTF-8 bytes of that text, and its log-probability.</summary>
public sealed class TopLogprobDto
{
    /// <summary>The token's text (bytes that are not whole UTF-8 characters as U+FFFD).</summary>
    [JsonPropertyName("token")] public string Token { get; set; } = "";
    /// <summary>Natural log of its probability under the model (before temperature, truncation or penalties).</summary>
    [JsonPropertyName("logprob")] public float Logprob { get; set; }
    /// <summary>The token's bytes.</summary>
    [JsonPropertyName("bytes")] public List<int> Bytes { get; set; } = [];
}

/// <summary>A generated token's chat log-probabilities.</summary>
public sealed class ChatTokenLogprobDto
{
    /// <summary>The token's text.</summary>
    [JsonPropertyName("token")] public string Token { get; set; } = "";
    /// <summary>Its log-probability.</summary>
    [JsonPropertyName("logprob")] public float Logprob { get; set; }
    /// <summary>The token's bytes.</summary>
    [JsonPropertyName("bytes")] public List<int> Bytes { get; set; } = [];
    /// <summary>The most likely tokens at this position, most likely first.</summary>
    [JsonPropertyName("top_logprobs")] public List<TopLogprobDto> TopLogprobs { get; set; } = [];
}

/// <summary>Chat log-probabilities of a choice (or of a chunk's tokens).</summary>
public sealed class ChatLogprobsDto
{
    /// <summary>One a generated token.</summary>
    [JsonPropertyName("content")] public List<ChatTokenLogprobDto> Content { get; set; } = [];
}

/// <summary>Completion log-probabilities (OpenAI's legacy shape): parallel lists, one entry a generated token.</summary>
public sealed class TextLogprobsDto
{
    /// <summary>The tokens' texts.</summary>
    [JsonPropertyName("tokens")] public List<string> Tokens { get; set; } = [];
    /// <summary>Their log-probabilities.</summary>
    [JsonPropertyName("token_logprobs")] public List<float?> TokenLogprobs { get; set; } = [];
    /// <summary>The most likely tokens at each position, text to log-probability (null for an echoed prompt's first token).</summary>
    [JsonPropertyName("top_logprobs")] public List<Dictionary<string, float>?> TopLogprobs { get; set; } = [];
    /// <summary>Where each token's text starts in the concatenation of the tokens' texts (characters).</summary>
    [JsonPropertyName("text_offset")] public List<int> TextOffset { get; set; } = [];
}

/// <summary>A chat or text completion, whole or one streamed chunk.</summary>
public sealed class CompletionResponseDto
{
    /// <summary>Response id.</summary>
    [JsonPropertyName("id")] public string Id { get; set; } = "";
    /// <summary>chat.completion, chat.completion.chunk or text_completion.</summary>
    [JsonPropertyName("object")] public string Object { get; set; } = "";
    /// <summary>Unix seconds.</summary>
    [JsonPropertyName("created")] public long Created { get; set; }
    /// <summary>Model id.</summary>
    [JsonPropertyName("model")] public string Model { get; set; } = "";
    /// <summary>Choices (one; none in a usage-only chunk).</summary>
    [JsonPropertyName("choices")] public List<ChoiceDto> Choices { get; set; } = [];
    /// <summary>Counts (whole responses; the last chunk with include_usage).</summary>
    [JsonPropertyName("usage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public UsageDto? Usage { get; set; }
    /// <summary>Rotor: the passages of a grounded answer.</summary>
    [JsonPropertyName("sources"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public List<SourceDto>? Sources { get; set; }
    /// <summary>Rotor: why the grounded answer retrieved what it did, in one line.</summary>
    [JsonPropertyName("retrieval_decision"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? RetrievalDecision { get; set; }
    /// <summary>Rotor: the whole retrieval decision (rule, count, reason, the model rule's confidence).</summary>
    [JsonPropertyName("retrieval"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public RetrievalDecisionDto? Retrieval { get; set; }
}

/// <summary>POST /v1/embeddings.</summary>
public sealed class EmbeddingRequestDto
{
    /// <summary>Model id.</summary>
    [JsonPropertyName("model")] public string? Model { get; set; }
    /// <summary>Texts (a string or an array of strings).</summary>
    [JsonPropertyName("input"), JsonConverter(typeof(StringListConverter))] public List<string>? Input { get; set; }
    /// <summary>float (default) or base64 (little-endian float32).</summary>
    [JsonPropertyName("encoding_format")] public string? EncodingFormat { get; set; }
    /// <summary>Dimensions (must equal the model's when given).</summary>
    [JsonPropertyName("dimensions")] public int? Dimensions { get; set; }
}

/// <summary>One embedding; <see cref="Embedding"/> is a float array or a base64 string.</summary>
public sealed class EmbeddingDto
{
    /// <summary>embedding.</summary>
    [JsonPropertyName("object")] public string Object { get; set; } = "embedding";
    /// <summary>Input index.</summary>
    [JsonPropertyName("index")] public int Index { get; set; }
    /// <summary>The vector (float[] or base64 string).</summary>
    [JsonPropertyName("embedding")] public JsonElement Embedding { get; set; }
}

/// <summary>Embeddings response.</summary>
public sealed class EmbeddingResponseDto
{
    /// <summary>list.</summary>
    [JsonPropertyName("object")] public string Object { get; set; } = "list";
    /// <summary>One a text.</summary>
    [JsonPropertyName("data")] public List<EmbeddingDto> Data { get; set; } = [];
    /// <summary>Model id.</summary>
    [JsonPropertyName("model")] public string Model { get; set; } = "";
    /// <summary>Counts (completion_tokens 0).</summary>
    [JsonPropertyName("usage")] public UsageDto Usage { get; set; } = new();
}

/// <summary>POST /v1/search (Rotor's).</summary>
public sealed class SearchRequestDto
{
    /// <summary>The query.</summary>
    [JsonPropertyName("query")] public string? Query { get; set; }
    /// <summary>Passages to return (default 5, at most 100).</summary>
    [JsonPropertyName("top")] public int? Top { get; set; }
    /// <summary>hybrid (default), dense or lexical.</summary>
    [JsonPropertyName("mode")] public string? Mode { get; set; }
}

/// <summary>Search response.</summary>
public sealed class SearchResponseDto
{
    /// <summary>list.</summary>
    [JsonPropertyName("object")] public string Object { get; set; } = "list";
    /// <summary>Passages, best first (number = rank).</summary>
    [JsonPropertyName("data")] public List<SourceDto> Data { get; set; } = [];
    /// <summary>Time to embed the query and search, in milliseconds.</summary>
    [JsonPropertyName("milliseconds")] public double Milliseconds { get; set; }
}

/// <summary>A model of GET /v1/models.</summary>
public sealed class ModelDto
{
    /// <summary>Id to put in requests.</summary>
    [JsonPropertyName("id")] public string Id { get; set; } = "";
    /// <summary>model.</summary>
    [JsonPropertyName("object")] public string Object { get; set; } = "model";
    /// <summary>Unix seconds (server start).</summary>
    [JsonPropertyName("created")] public long Created { get; set; }
    /// <summary>rotor.</summary>
    [JsonPropertyName("owned_by")] public string OwnedBy { get; set; } = "rotor";
}

/// <summary>GET /v1/models.</summary>
public sealed class ModelListDto
{
    /// <summary>list.</summary>
    [JsonPropertyName("object")] public string Object { get; set; } = "list";
    /// <summary>The models served.</summary>
    [JsonPropertyName("data")] public List<ModelDto> Data { get; set; } = [];
}

/// <summary>OpenAI's error body.</summary>
public sealed class ErrorDto
{
    /// <summary>One line saying what is wrong.</summary>
    [JsonPropertyName("message")] public string Message { get; set; } = "";
    /// <summary>invalid_request_error, authentication_error, rate_limit_error, server_error, ...</summary>
    [JsonPropertyName("type")] public string Type { get; set; } = "";
    /// <summary>The request field at fault, or null.</summary>
    [JsonPropertyName("param")] public string? Param { get; set; }
    /// <summary>A machine-readable code, or null.</summary>
    [JsonPropertyName("code")] public string? Code { get; set; }
}

/// <summary><c>{"error": {...}}</c>.</summary>
public sealed class ErrorResponseDto
{
    /// <summary>The error.</summary>
    [JsonPropertyName("error")] public ErrorDto Error { get; set; } = new();
}

/// <summary>GET /health.</summary>
public sealed class HealthDto
{
    /// <summary>ok or shutting_down.</summary>
    [JsonPropertyName("status")] public string Status { get; set; } = "ok";
    /// <summary>Model id.</summary>
    [JsonPropertyName("model")] public string Model { get; set; } = "";
    /// <summary>Requests waiting.</summary>
    [JsonPropertyName("queue")] public int Queue { get; set; }
    /// <summary>Sequences decoding.</summary>
    [JsonPropertyName("active")] public int Active { get; set; }
    /// <summary>Whether retrieval (an index) is loaded.</summary>
    [JsonPropertyName("retrieval")] public bool Retrieval { get; set; }
    /// <summary>Whether the embedding model is loaded.</summary>
    [JsonPropertyName("embeddings")] public bool Embeddings { get; set; }
}

/// <summary>Source-generated serialization of every wire type (no reflection: native AOT ready).</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.Never, ReadCommentHandling = JsonCommentHandling.Disallow,
    NumberHandling = JsonNumberHandling.Strict, UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip)]
[JsonSerializable(typeof(CompletionRequestDto))]
[JsonSerializable(typeof(CompletionResponseDto))]
[JsonSerializable(typeof(ChatLogprobsDto))]
[JsonSerializable(typeof(TextLogprobsDto))]
[JsonSerializable(typeof(EmbeddingRequestDto))]
[JsonSerializable(typeof(EmbeddingResponseDto))]
[JsonSerializable(typeof(SearchRequestDto))]
[JsonSerializable(typeof(SearchResponseDto))]
[JsonSerializable(typeof(ModelListDto))]
[JsonSerializable(typeof(ErrorResponseDto))]
[JsonSerializable(typeof(HealthDto))]
[JsonSerializable(typeof(float[]))]
[JsonSerializable(typeof(string))]
public sealed partial class ServerJson : JsonSerializerContext;

/// <summary>Reads a string, or an array of strings, as a list.</summary>
public sealed class StringListConverter : JsonConverter<List<string>>
{
    /// <inheritdoc/>
    public override List<string>? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType == JsonTokenType.String) return [reader.GetString()!];
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("expected a string or an array of strings");
        var list = new List<string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.String) throw new JsonException("expected a string or an array of strings");
            list.Add(reader.GetString()!);
        }
        return list;
    }

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, List<string> value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        foreach (var s in value) writer.WriteStringValue(s);
        writer.WriteEndArray();
    }
}

/// <summary>A completion prompt as sent: texts, or token-id lists.</summary>
public sealed class PromptDto
{
    /// <summary>Prompt texts (a string, or an array of strings).</summary>
    public List<string>? Texts { get; set; }
    /// <summary>Prompts as token ids (an array of ids, or an array of such arrays).</summary>
    public List<int[]>? Ids { get; set; }
    /// <summary>Prompts sent.</summary>
    public int Count => Texts?.Count ?? Ids?.Count ?? 0;
}

/// <summary>Reads a completion prompt: a string, an array of strings, an array of token ids, or an array of arrays of ids.</summary>
public sealed class PromptConverter : JsonConverter<PromptDto>
{
    private const string Expected = "expected a string, an array of strings, an array of token ids or an array of arrays of token ids";

    /// <inheritdoc/>
    public override PromptDto? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType == JsonTokenType.String) return new PromptDto { Texts = [reader.GetString()!] };
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException(Expected);
        var p = new PromptDto();
        List<int>? flat = null;   // an array of ids: one prompt
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType == JsonTokenType.String && flat is null && p.Ids is null) (p.Texts ??= []).Add(reader.GetString()!);
            else if (reader.TokenType == JsonTokenType.Number && p.Texts is null && p.Ids is null) (flat ??= []).Add(ReadId(ref reader));
            else if (reader.TokenType == JsonTokenType.StartArray && p.Texts is null && flat is null)
            {
                var ids = new List<int>();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.Number) throw new JsonException(Expected);
                    ids.Add(ReadId(ref reader));
                }
                (p.Ids ??= []).Add([.. ids]);
            }
            else throw new JsonException(Expected);
        }
        if (flat is not null) p.Ids = [[.. flat]];
        return p;
    }

    private static int ReadId(ref Utf8JsonReader reader)
        => reader.TryGetInt32(out int id) ? id : throw new JsonException("a token id must be an integer");

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, PromptDto value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        foreach (var t in value.Texts ?? []) writer.WriteStringValue(t);
        foreach (var ids in value.Ids ?? [])
        {
            writer.WriteStartArray();
            foreach (int id in ids) writer.WriteNumberValue(id);
            writer.WriteEndArray();
        }
        writer.WriteEndArray();
    }
}

/// <summary>Reads message content: a string, or an array of <c>{"type": "text", "text": ...}</c> parts (joined).</summary>
public sealed class ContentConverter : JsonConverter<string>
{
    /// <inheritdoc/>
    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType == JsonTokenType.String) return reader.GetString();
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("expected a string or an array of content parts");
        var text = new System.Text.StringBuilder();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject) throw new JsonException("a content part must be an object");
            string? type = null, partText = null;
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                string name = reader.GetString()!;
                reader.Read();
                if (name == "type" && reader.TokenType == JsonTokenType.String) type = reader.GetString();
                else if (name == "text" && reader.TokenType == JsonTokenType.String) partText = reader.GetString();
                else reader.Skip();
            }
            if (type != "text" || partText is null) throw new JsonException($"content part of type '{type}' is not supported (only text)");
            text.Append(partText);
        }
        return text.ToString();
    }

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(value);
}
