using System.Reflection;
using System.Text;
using System.Text.Json;

namespace Rotor.Cli;

/// <summary>
/// Which exceptions are bad input (the user can fix them: a file, an option, the machine) and which are bugs. Bad input
/// is a <see cref="RotorException"/>, or an exception of the platform or of a file-format library that says a file is
/// missing, unreadable or not what it claims to be; its line is the exception's own message, which for I/O names the
/// path. Readers in Rotor wrap such errors with the file they read where they can; this is the net under them.
/// </summary>
internal static class ErrorPolicy
{
    /// <summary>One line for an expected error, or null when <paramref name="e"/> is a bug.</summary>
    public static string? Describe(Exception e)
    {
        e = Unwrap(e);
        string msg = Program.OneLine(e.Message);
        return e switch
        {
            RotorException => msg,
            FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException or PathTooLongException => msg,
            EndOfStreamException => $"a file ends early: {msg}",
            InvalidDataException => $"invalid data: {msg}",
            DecoderFallbackException => $"text is not valid UTF-8: {msg}",
            JsonException => $"invalid JSON: {msg}",
            IOException => msg,
            PlatformNotSupportedException => $"not supported on this machine: {msg}",
            _ when e.GetType().Namespace?.StartsWith("SharpCompress", StringComparison.Ordinal) == true => $"corrupt compressed data: {msg}",
            _ => null,
        };
    }

    // Wrappers that carry the real error inside them.
    private static Exception Unwrap(Exception e)
    {
        while (true)
        {
            switch (e)
            {
                case TypeInitializationException { InnerException: { } i }: e = i; continue;
                case TargetInvocationException { InnerException: { } i }: e = i; continue;
                case AggregateException a when a.InnerExceptions.Count == 1: e = a.InnerExceptions[0]; continue;
                default: return e;
            }
        }
    }
}
