using Microsoft.Extensions.AI;
using Rotor.Lm.Chat;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Tests;

/// <summary>The IChatClient over the real stories260K model (plain chat format: llama2.c models have no template).</summary>
public sealed class ChatClientTests
{
    private static LanguageModel Load() => LanguageModel.Load(TestPaths.SharedLm("stories260K.bin")!,
        new LanguageModelOptions { TokenizerPath = TestPaths.SharedLm("tok512.bin"), Threads = 1 });

    [SharedLmFact("stories260K.bin", "tok512.bin")]
    public async Task StreamingAndWholeRepliesAgreeAndReportUsage()
    {
        using var m = Load();
        using var client = new RotorChatClient(m);
        Assert.Equal(ChatFormat.Plain, client.Format);
        var opts = new ChatOptions { Temperature = 0, MaxOutputTokens = 20 };
        ChatMessage[] conversation = [new(ChatRole.User, "Once upon a time")];
        var whole = await client.GetResponseAsync(conversation, opts);
        var text = "";
        UsageDetails? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var u in client.GetStreamingResponseAsync(conversation, opts))
        {
            text += u.Text;
            usage ??= u.Contents.OfType<UsageContent>().FirstOrDefault()?.Details;
            finish ??= u.FinishReason;
        }
        Assert.Equal(whole.Text, text);
        Assert.StartsWith(", there was a little girl named Lily.", whole.Text);
        Assert.Equal(20, whole.Usage!.OutputTokenCount);
        Assert.Equal(client.RenderPrompt(conversation).Count, whole.Usage.InputTokenCount);
        Assert.Equal(20, usage!.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, finish);
        // The second call sends the same conversation: the session still holds all of it but the last prompt token.
        Assert.Equal(0, whole.Usage.CachedInputTokenCount);
        Assert.Equal(whole.Usage.InputTokenCount - 1, usage.CachedInputTokenCount);
    }

    [SharedLmFact("stories260K.bin", "tok512.bin")]
    public async Task StopSequencesAndBadOptions()
    {
        using var m = Load();
        using var client = new RotorChatClient(m);
        var r = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Once upon a time")],
            new ChatOptions { Temperature = 0, MaxOutputTokens = 60, StopSequences = ["Lily"] });
        Assert.Equal(", there was a little girl named ", r.Text);
        Assert.Equal(ChatFinishReason.Stop, r.FinishReason);
        await Assert.ThrowsAsync<RotorException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "x")], new ChatOptions { TopP = 2 }));
    }
}
