namespace Rotor.Server;

/// <summary>A request the server refuses: the HTTP status and OpenAI's error fields.</summary>
public sealed class ApiException(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null) : Exception(message)
{
    /// <summary>HTTP status code.</summary>
    public int Status { get; } = status;
    /// <summary>OpenAI error type.</summary>
    public string Type { get; } = type;
    /// <summary>The request field at fault.</summary>
    public string? Param { get; } = param;
    /// <summary>Machine-readable code.</summary>
    public string? Code { get; } = code;

    /// <summary>400 for a bad field.</summary>
    public static ApiException Invalid(string param, string message, string? code = null) => new(400, message, "invalid_request_error", param, code);
}
